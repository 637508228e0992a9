"""The docs stay true to the code: the README's front door, its quick starts run as written (and exit
cleanly), the generated references are current, and the mkdocs site builds with --strict."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from causalguard.metrics_reference import render

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 170, f"README.md has {len(lines)} lines; move detail to docs/"
    for target in re.findall(r"\]\(([^)#\s]+)", README.read_text()):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_the_metrics_reference_is_current() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render(), "regenerate: .venv/bin/python -m causalguard.metrics_reference > docs/metrics.md"


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    if not Path(mkdocs).exists():
        pytest.skip("mkdocs not installed (dev extra)")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("ValueGuard") > 3


@pytest.mark.slow
def test_the_readme_python_quick_starts_run_and_exit_cleanly(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2, "the README has a Python and a LangChain quick start"
    script = tmp_path / "quick_start.py"
    script.write_text("\n".join(blocks))  # the second guard is never closed: it must still exit cleanly
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr and "vector:benevolence:+:L15:0.15:all" in done.stdout


def _documented_commands() -> list[tuple[str, list[str]]]:
    """(file:line, words) for every ``causalguard ...`` command in the README's and the docs' code blocks
    and inline code (continuation backslashes joined)."""
    found = []
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        in_code = False
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            spans = re.findall(r"`((?:\.venv/bin/)?causalguard [^`]*)`", line)
            if in_code and re.match(r"\s*(?:\.venv/bin/)?causalguard ", line):
                spans.append(line.split("#", 1)[0])
            for span in spans:
                words = span.strip().split()[1:]
                if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    found.append((f"{path.name}:{number}", words))
    return found


def test_every_documented_command_and_flag_exists() -> None:
    """What the README and the docs tell users to type names real commands and real options (the runs
    themselves take minutes to hours; their flags must at least parse)."""
    import typer

    from causalguard.cli import app

    root: Any = typer.main.get_command(app)  # typer's own click: groups have .commands, commands .params
    documented = _documented_commands()
    assert len(documented) > 30  # the scan sees the docs
    problems = []
    for where, words in documented:
        command = root
        rest = list(words)
        while hasattr(command, "commands") and rest and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        if hasattr(command, "commands"):
            if rest and re.fullmatch(r"[a-z][a-z-]+", rest[0]) and command is root:
                problems.append(f"{where}: no command '{rest[0]}'")
            continue
        options = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
        for word in rest:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and flag not in options and flag != "--help":
                problems.append(f"{where}: '{command.name}' has no option {flag}")
    assert not problems, "\n".join(problems)
