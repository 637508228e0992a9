"""``causalguard serve`` and ``causalguard plan``: run the guard server, print a config's plans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigArg = Annotated[Path, typer.Option("--config", "-c", help="Operator config (guard.yaml).")]


def serve_command(
    config: ConfigArg,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            help="text, or json: one JSON object per line (with request ids, "
            "plans at start and reload, rejected parameters)."
        ),
    ] = "text",
) -> None:
    """Serve the guarded model: OpenAI-compatible /v1/chat/completions, /metrics, /healthz, /readyz.

    SIGTERM drains in-flight requests (up to server.drain_timeout_seconds); SIGHUP reloads the config.
    """
    import logging

    import uvicorn

    from causalguard.config.loading import read_guard_config
    from causalguard.metrics import GuardMetrics, start_metrics_server
    from causalguard.server.app import create_app

    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"expected text or json, got {log_format!r}", param_hint="--log-format")
    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level.lower() not in levels:
        raise typer.BadParameter(f"expected one of {', '.join(levels)}, got {log_level!r}", param_hint="--log-level")
    log_level = log_level.lower()
    if log_format == "json":
        from causalguard.server.json_logs import use_json_logs

        use_json_logs("debug" if log_level == "trace" else log_level)
    else:
        logging.basicConfig(
            level="DEBUG" if log_level == "trace" else log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    source = read_guard_config(config)  # parsed once, then passed down
    settings = source.config
    from causalguard.server.client_keys import is_loopback

    if not is_loopback(host) and not settings.server.api_keys and not settings.server.allow_anonymous:
        raise typer.BadParameter(
            f"{host} is reachable from other machines and {config} lists no server.api_keys, so anyone could "
            "use the guard: add keys (server.api_keys: [{id: team-a, sha256: ...}], the SHA-256 of each key: "
            'printf %s "$KEY" | sha256sum), bind 127.0.0.1, or set server.allow_anonymous: true behind a '
            "gateway that authenticates clients",
            param_hint="--host",
        )
    metrics = GuardMetrics()
    if settings.metrics.port is not None:
        start_metrics_server(metrics, settings.metrics.port, settings.metrics.host)
    app = create_app(source, metrics=metrics)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            log_config=None if log_format == "json" else uvicorn.config.LOGGING_CONFIG,
            timeout_graceful_shutdown=int(settings.server.drain_timeout_seconds),
        )
    )
    server.run()


def plan_command(
    config: Annotated[Path, typer.Argument(help="Operator config (guard.yaml).")],
    profile: Annotated[str | None, typer.Option(help="Only this profile (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Use the bundle even if built for other weights.")] = False,
) -> None:
    """Print each profile's plan in plain words: levers, expected target change, side effects, why."""
    from causalguard.runtime.value_guard import ValueGuard

    guard = ValueGuard.from_config(config, start_audits=False, force_bundle=force)
    with guard:
        for name in [profile] if profile else list(guard.state.plans):
            typer.echo(guard.explain(name))
            typer.echo("")
