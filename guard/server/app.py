"""The OpenAI-compatible guard server: FastAPI app factory.

Routes: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /metrics``,
``GET /healthz`` (the process is up), ``GET /readyz`` (model and bundle loaded, a real forward pass
done), ``POST /admin/reload`` (bearer token from the env var the config names). Errors use the
OpenAI error schema: 400 for invalid input, 403 for interventions the operator did not allow, 413 for
oversized bodies, 429 with Retry-After when the queue is full, 503 while not ready, 504 on timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention
from causalguard.config.loading import SourcedConfig, read_guard_config
from causalguard.config.schema import GuardConfig
from causalguard.errors import ConfigError
from causalguard.metrics import GuardMetrics, metrics_asgi_app
from causalguard.runtime.value_guard import Cancellation, ValueGuard
from causalguard.server.admission import Admission, QueueFullError
from causalguard.server.body_limit import BodyLimit
from causalguard.server.schemas import ChatCompletionRequest, error_body
from causalguard.server.streaming import ThreadedIterator
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

log = logging.getLogger(__name__)
GuardFactory = Callable[[SourcedConfig, GuardMetrics], ValueGuard]


def _default_factory(config: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
    return ValueGuard.from_config(config, metrics=metrics)


class ServerState:
    """What the routes share: set once at start-up, then read; counters live in ``Admission``."""

    def __init__(self, source: SourcedConfig, metrics: GuardMetrics) -> None:
        self.source = source  # the start-up config; once the guard is loaded, its config is the one served
        self.metrics = metrics
        self.admission = Admission(source.config.server.max_concurrency, source.config.server.max_queue)
        metrics.track_admission(lambda: self.admission.running, lambda: self.admission.waiting)
        self.guard: ValueGuard | None = None
        self.ready = False
        self.load_error: str | None = None

    @property
    def config(self) -> GuardConfig:
        return self.guard.config if self.guard is not None else self.source.config

    def hooks_installed(self) -> int:
        return self.guard.installed_hooks if self.guard is not None else 0


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body generator however the response ends. Starlette stops iterating when a send
    fails on a closed connection but leaves the generator to garbage collection, which would let the
    generation behind it run on; closing it cancels generation and releases the slot at once."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


def _error(status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_=type_, param=param, code=code), status_code=status, headers=headers)


def create_app(config: SourcedConfig | Path, *, guard_factory: GuardFactory = _default_factory,
               metrics: GuardMetrics | None = None) -> FastAPI:
    """Build the app; the model loads in the background after start-up (``/readyz`` says when).
    A path is read here, once (a bad file fails fast, before serving anything)."""
    state = ServerState(read_guard_config(config), metrics or GuardMetrics())

    def load() -> None:
        try:
            guard = guard_factory(state.source, state.metrics)
            guard.generate([{"role": "user", "content": "Hello"}], max_new_tokens=1)  # a real forward pass
            state.guard = guard
            state.ready = True
            log.info("guard ready: %s, profiles %s", guard.lm.name, ", ".join(guard.state.plans))
        except Exception as exc:  # reported by /readyz; the process stays up for inspection
            log.exception("loading the guard failed")
            state.load_error = f"{type(exc).__name__}: {exc}"

    def reload_from_signal() -> None:
        threading.Thread(target=_reload, args=(state,), name="causalguard-reload", daemon=True).start()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=load, name="causalguard-load", daemon=True)
        loader.start()
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_from_signal)
        except (NotImplementedError, RuntimeError, ValueError):
            log.warning("SIGHUP reload is not available here; use POST /admin/reload")
        try:
            yield
        finally:
            state.ready = False
            await asyncio.to_thread(loader.join)
            if state.guard is not None:
                state.guard.close()

    app = FastAPI(title="causalguard", lifespan=lifespan)
    app.state.guard_server = state
    app.mount("/metrics", metrics_asgi_app(state.metrics))

    app.add_middleware(BodyLimit, limit=lambda: state.config.server.max_request_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return _error(400, f"{param or 'body'}: {first.get('msg')}", param=param, code="invalid_value")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        body: dict[str, Any] = {"ready": state.ready, "running": state.admission.running,
                                "waiting": state.admission.waiting, "hooks_installed": state.hooks_installed()}
        if state.guard is not None:
            body.update(model=state.guard.lm.name, profiles=list(state.guard.state.plans),
                        bundle_fingerprint=state.guard.bundle.fingerprint)
        if state.load_error:
            body["error"] = state.load_error
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        name = state.config.model
        ids = [name] + [f"{name}:{p}" for p in state.config.profile_names]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "causalguard"}
                                           for i in ids]}

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> JSONResponse:
        env = state.config.server.admin_token_env
        token = os.environ.get(env) if env else None
        if not token:
            return _error(403, f"the admin endpoint is disabled: set {env or 'server.admin_token_env'}",
                          type_="permission_error")
        if request.headers.get("authorization") != f"Bearer {token}":
            return _error(401, "missing or wrong bearer token", type_="authentication_error")
        if state.guard is None:
            return _error(503, "not ready", type_="server_error", headers={"Retry-After": "5"})
        try:
            version = await asyncio.to_thread(_reload, state, True)
        except ConfigError as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error", "param": "config",
                                           "code": "invalid_config",
                                           "problems": [str(p) for p in exc.problems]}}, status_code=400)
        return JSONResponse({"reloaded": True, "version": version, "profiles": state.config.profile_names})

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        guard = state.guard
        if not state.ready or guard is None:
            return _error(503, "the model is still loading", type_="server_error", code="not_ready",
                          headers={"Retry-After": "5"})
        config = guard.config
        profile = body.profile or (body.model.split(":", 1)[1] if ":" in body.model else "default")
        if profile not in guard.state.plans:
            return _error(400, f"unknown profile '{profile}'; profiles: {', '.join(guard.state.plans)}",
                          param="profile", code="unknown_profile")
        limit = body.token_limit(min(64, config.server.max_tokens_limit))
        if limit > config.server.max_tokens_limit:
            return _error(400, f"max_tokens {limit} is over this server's limit {config.server.max_tokens_limit}",
                          param="max_tokens", code="max_tokens_too_large")
        extra: tuple[SaeIntervention, ...] = ()
        if body.interventions:
            if not config.allow_client_interventions:
                return _error(403, "this server does not accept client interventions; choose a profile",
                              type_="permission_error", param="interventions")
            if guard.sae is None:
                return _error(400, "this guard has no SAE to intervene with", param="interventions")
            try:
                extra = (SaeIntervention(guard.sae, tuple(FeatureEdit(i.feature, i.mode, i.value)
                                                          for i in body.interventions)),)
            except ValueError as exc:
                return _error(400, str(exc), param="interventions")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                    for m in body.messages]
        if not any(m["role"] != "system" for m in messages):
            return _error(400, "messages need at least one user turn", param="messages")
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(state.admission.slot())
        except QueueFullError as exc:
            state.metrics.count_rejected(profile)
            return _error(429, f"server busy: {exc}", type_="rate_limit_error", code="queue_full",
                          headers={"Retry-After": "1"})
        kwargs: dict[str, Any] = {"profile": profile, "max_new_tokens": limit, "temperature": body.temperature,
                                  "seed": body.seed, "extra_interventions": extra}
        if body.stream:
            return ClosingStreamingResponse(_sse(state, guard, messages, kwargs, body.model, stack, request),
                                            media_type="text/event-stream")
        async with stack:
            cancel = Cancellation()
            job = asyncio.ensure_future(asyncio.to_thread(guard.generate, messages, cancel=cancel, **kwargs))
            try:
                reply = await asyncio.wait_for(asyncio.shield(job), config.server.request_timeout_seconds)
            except TimeoutError:
                cancel.cancel("timeout")
                await job
                return _error(504, "generation timed out", type_="server_error", code="timeout")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                      "total_tokens": reply.prompt_tokens + reply.completion_tokens},
            "causalguard": {"profile": reply.profile, "levers": list(reply.levers)},
        }

    return app


async def _sse(state: ServerState, guard: ValueGuard, messages: list[dict[str, str]], kwargs: dict[str, Any],
               model: str, stack: AsyncExitStack, request: Request) -> AsyncIterator[str]:
    """SSE chunks; a client that disconnects cancels generation, which releases its slot.

    The disconnect is polled between tokens: uvicorn drops writes to a closed connection silently,
    so waiting for a failed write would let the generation run to its end."""
    cancel = Cancellation()
    report: dict[str, Any] = {}
    pieces: ThreadedIterator[str] = ThreadedIterator(
        guard.stream(messages, cancel=cancel, report=report, **kwargs), cancel)
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    deadline = time.monotonic() + guard.config.server.request_timeout_seconds

    def chunk(delta: dict[str, str], finish: str | None) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                cancel.cancel("timeout")
                await pieces.aclose()
                yield f"data: {json.dumps(error_body('generation timed out', type_='server_error'))}\n\n"
                break
            piece = await asyncio.wait_for(pieces.next(), remaining) if remaining > 0 else None
            if piece is None:
                yield chunk({}, report.get("finish_reason", "stop"))
                break
            if await request.is_disconnected():
                break  # finally: cancel generation, release the slot
            yield chunk({"content": piece}, None)
        yield "data: [DONE]\n\n"
    except TimeoutError:
        cancel.cancel("timeout")
        yield f"data: {json.dumps(error_body('generation timed out', type_='server_error'))}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        # Shielded: when the client is gone, the task is cancelled and every unshielded await here would
        # raise at once, releasing the slot before generation has stopped.
        with anyio.CancelScope(shield=True):
            await pieces.aclose()
            await stack.aclose()


def _reload(state: ServerState, raise_errors: bool = False) -> int:
    """Reload the guard's config from its file (SIGHUP or the admin endpoint)."""
    guard = state.guard
    if guard is None:
        return 0
    try:
        guard.reload()
    except ConfigError:
        log.exception("config reload refused; the old config stays active")
        if raise_errors:
            raise
        return guard.config_version
    log.info("config reloaded: profiles %s", ", ".join(guard.state.plans))
    return guard.config_version
