"""A dependency-free SVG picture of a value graph (nodes on a circle, edge width = stability)."""

from __future__ import annotations

import math
from html import escape

from causalguard.bundle.graph import ValueGraph

SIZE = 560
RADIUS = 200
NODE_R = 34


def render_svg(graph: ValueGraph, *, title: str = "") -> str:
    centre = SIZE / 2
    pos = {
        node: (
            centre + RADIUS * math.sin(2 * math.pi * k / len(graph.nodes)),
            centre - RADIUS * math.cos(2 * math.pi * k / len(graph.nodes)),
        )
        for k, node in enumerate(graph.nodes)
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE + 30}" '
        f'viewBox="0 0 {SIZE} {SIZE + 30}">',
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>',
        '<marker id="arrow-start" viewBox="0 0 10 10" refX="0" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M10,0 L0,5 L10,10 z" fill="#333"/></marker>',
        "</defs>",
        f'<text x="{centre}" y="20" text-anchor="middle" font-family="sans-serif" font-size="14">'
        f"{escape(title)}</text>",
    ]
    for e in graph.edges:
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        ux, uy = dx / length, dy / length
        sx, sy = x1 + ux * NODE_R, y1 + uy * NODE_R + 15
        tx, ty = x2 - ux * NODE_R, y2 - uy * NODE_R + 15
        width = 1 + 3 * (e.stability if e.stability is not None else 0.5)
        markers = ""
        if e.kind in ("directed", "bidirected"):
            markers += ' marker-end="url(#arrow)"'
        if e.kind == "bidirected":
            markers += ' marker-start="url(#arrow-start)"'
        dash = ' stroke-dasharray="6,4"' if e.kind == "undirected" else ""
        parts.append(
            f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{tx:.1f}" y2="{ty:.1f}" stroke="#333" '
            f'stroke-width="{width:.2f}"{dash}{markers}><title>{escape(str(e))}</title></line>'
        )
    for node, (x, y) in pos.items():
        parts.append(f'<circle cx="{x:.1f}" cy="{y + 15:.1f}" r="{NODE_R}" fill="#e8f0fe" stroke="#1a73e8"/>')
        label = escape(node.replace("_", " "))
        parts.append(
            f'<text x="{x:.1f}" y="{y + 19:.1f}" text-anchor="middle" font-family="sans-serif" '
            f'font-size="10">{label}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
