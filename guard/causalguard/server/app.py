"""The OpenAI-compatible guard server: FastAPI app factory.

Routes: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /metrics``,
``GET /healthz`` (the process is up), ``GET /readyz`` (model and bundle loaded, a real forward pass
done), ``POST /admin/reload`` and ``GET /v1/guard/explain?profile=`` (bearer token from the env var the
config names). Errors use the
OpenAI error schema: 400 for invalid input, 403 for interventions the operator did not allow, 413 for
oversized bodies, 429 with Retry-After when the queue is full, 503 while not ready, 504 on timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from causalguard.config.loading import SourcedConfig, read_guard_config
from causalguard.errors import CausalguardError
from causalguard.metrics import GuardMetrics, metrics_asgi_app
from causalguard.runtime.value_guard import ValueGuard
from causalguard.server.body_limit import BodyLimit
from causalguard.server.request_id import RequestId
from causalguard.server.routes import error_response, router
from causalguard.server.state import ServerState, log_plans, reload_config

log = logging.getLogger(__name__)
GuardFactory = Callable[[SourcedConfig, GuardMetrics], ValueGuard]


def _default_factory(config: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
    return ValueGuard.from_config(config, metrics=metrics)


def create_app(
    config: SourcedConfig | Path, *, guard_factory: GuardFactory = _default_factory, metrics: GuardMetrics | None = None
) -> FastAPI:
    """Build the app; the model loads in the background after start-up (``/readyz`` says when).
    A path is read here, once (a bad file fails fast, before serving anything)."""
    state = ServerState(read_guard_config(config), metrics or GuardMetrics())

    def load() -> None:
        try:
            guard = guard_factory(state.source, state.metrics)
            # a real forward pass, kept from the live monitor (and counted as a request, as before)
            guard.generate([{"role": "user", "content": "Hello"}], max_new_tokens=1, observe=False)
            guard.busy = state.busy
            guard.upstream_ready = lambda: not state.upstream_down()
            state.guard = guard
            state.ready = True
            log.info("guard ready: %s, profiles %s", guard.lm.name, ", ".join(guard.state.plans))
            log_plans(guard, "start")
        except CausalguardError as exc:  # an explained error (config, bundle, plan): no traceback
            log.error("loading the guard failed:\n%s", exc)
            state.load_error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # reported by /readyz; the process stays up for inspection
            log.exception("loading the guard failed")
            state.load_error = f"{type(exc).__name__}: {exc}"

    def reload_from_signal() -> None:
        threading.Thread(target=reload_config, args=(state,), name="causalguard-reload", daemon=True).start()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Requests block a worker thread each while they generate (streams: one more to pull pieces), so
        # the loop's default pool (cores + 4 threads) would cap the decode batch far below max_concurrency.
        server = state.source.config.server
        workers = ThreadPoolExecutor(
            2 * (server.max_concurrency + server.max_queue) + 8, thread_name_prefix="causalguard-request"
        )
        asyncio.get_running_loop().set_default_executor(workers)
        loader = threading.Thread(target=load, name="causalguard-load", daemon=True)
        loader.start()
        probes = [asyncio.create_task(upstream.probe_forever()) for upstream in state.upstreams()]
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_from_signal)
        except (NotImplementedError, RuntimeError, ValueError):
            log.warning("SIGHUP reload is not available here; use POST /admin/reload")
        try:
            yield
        finally:
            state.ready = False
            for probe in probes:
                probe.cancel()
            await asyncio.to_thread(loader.join)
            if state.guard is not None:
                state.guard.close()
            for upstream in state.upstreams():
                await upstream.aclose()
            workers.shutdown(wait=False)

    app = FastAPI(title="causalguard", lifespan=lifespan)
    app.state.guard_server = state

    @app.get("/metrics", include_in_schema=False)
    async def metrics_exact(request: Request) -> Response:  # the mount below only serves /metrics/ (else a 307)
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(state.metrics.registry), media_type=content_type)

    app.mount("/metrics", metrics_asgi_app(state.metrics))

    app.add_middleware(BodyLimit, limit=lambda: state.config.server.max_request_bytes)
    app.add_middleware(RequestId)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        state.metrics.count_invalid("none")
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # loc is ("body", <character offset>): say where, in lines
            offset = next((p for p in first.get("loc", ())[1:] if isinstance(p, int)), None)
            body = exc.body if isinstance(exc.body, str | bytes) else b""
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            where = ""
            if offset is not None:
                line = text.count("\n", 0, offset) + 1
                where = f" at line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"
            ctx = first.get("ctx")
            detail = ctx.get("error", "JSON decode error") if isinstance(ctx, dict) else "JSON decode error"
            return error_response(400, f"the body is not valid JSON{where}: {detail}", param=None, code="invalid_json")
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return error_response(400, f"{param or 'body'}: {first.get('msg')}", param=param, code="invalid_value")

    app.include_router(router)
    return app
