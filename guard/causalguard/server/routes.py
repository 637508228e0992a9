"""The server's routes: health, readiness, models, admin reload and OpenAI-compatible chat completions.

Every route reads the shared ``ServerState`` from ``request.app.state.guard_server`` (set by ``create_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from causalguard.errors import CausalguardError, ConfigError
from causalguard.metrics import RequestOutcome
from causalguard.runtime.conversation import compose_messages
from causalguard.runtime.engine_levers import EngineRequest, engine_request
from causalguard.runtime.value_guard import DEADLINE_GRACE_SECONDS, Cancellation, ValueGuard
from causalguard.server.admission import QueueFullError
from causalguard.server.client_keys import ANONYMOUS, check_client_key
from causalguard.server.request_id import request_id_of
from causalguard.server.schemas import (
    ChatCompletionRequest,
    GuardCall,
    RequestRejected,
    error_body,
    translate_request,
)
from causalguard.server.state import ServerState, reload_config
from causalguard.server.streaming import ThreadedIterator
from causalguard.server.upstream import Upstream, UpstreamError, completion_tokens

router = APIRouter()
log = logging.getLogger(__name__)


def applied_levers(guard: ValueGuard, profile: str) -> dict[str, Any]:
    """The ``causalguard`` field of a response: which profile and levers shaped it."""
    return {"profile": profile, "levers": [lever.id for lever in guard.state.plan(profile).levers]}


def sse_error(message: str, *, code: str | None = None) -> str:
    """An OpenAI error event: what a stream says when it fails after its first byte (``[DONE]`` follows)."""
    return f"data: {json.dumps(error_body(message, type_='server_error', code=code))}\n\n"


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.guard_server
    return state


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


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, type_=type_, param=param, code=code), status_code=status, headers=headers)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = server_state(request)
    loop = state.decode_loop()
    stuck = state.decode_loop_stuck()
    ready = state.ready and not stuck and not state.upstream_down()
    body: dict[str, Any] = {
        "ready": ready,
        "running": state.admission.running,
        "waiting": state.admission.waiting,
        "hooks_installed": state.hooks_installed(),
    }
    if loop is not None:
        body["decode_loop"] = {
            "alive": loop.alive,
            "stuck": stuck,
            "stalled_seconds": round(loop.stalled_seconds, 3),
            "rows": loop.rows,
            "failed_steps": loop.failed_steps,
        }
    if state.guard is not None:
        body.update(
            model=state.guard.lm.name,
            profiles=list(state.guard.state.plans),
            bundle_fingerprint=state.guard.bundle.fingerprint,
        )
    if state.upstream is not None:
        body["upstream"] = state.upstream.health.as_dict()
    if state.engine_upstreams:  # the upstreams started with a control vector
        body["control_vector_upstreams"] = {url: u.health.as_dict() for url, u in state.engine_upstreams.items()}
    if state.load_error:
        body["error"] = state.load_error
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/v1/models", response_model=None)
async def models(request: Request) -> dict[str, Any] | JSONResponse:
    state = server_state(request)
    refused = _client_refusal(state, request)
    if refused is not None:
        return refused
    name = state.config.model
    ids = [name] + [f"{name}:{p}" for p in state.config.profile_names]
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": 0, "owned_by": "causalguard"} for i in ids],
    }


@router.get("/v1/models/{model_id}")
async def model(model_id: str, request: Request) -> Any:
    state = server_state(request)
    refused = _client_refusal(state, request)
    if refused is not None:
        return refused
    name = state.config.model
    if model_id not in [name] + [f"{name}:{p}" for p in state.config.profile_names]:
        return error_response(
            404,
            f"the model '{model_id}' does not exist here (GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "causalguard"}


def _client_refusal(state: ServerState, request: Request) -> JSONResponse | None:
    """None when the request may use ``/v1`` (no keys configured, or a listed key within its rate limit);
    else the 401 or 429 to answer, in OpenAI's shape. The key's id (never the key) is logged with the
    request id."""
    server = state.config.server
    checked = check_client_key(request.headers.get("authorization"), server.api_keys)
    rid = request_id_of(request.scope)
    if checked.refusal is not None:
        log.info(
            "request %s refused: %s",
            rid,
            checked.refusal,
            extra={"event": "unauthenticated", "request_id": rid, "status": 401},
        )
        return error_response(401, checked.refusal, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    key_id = checked.key_id or ANONYMOUS
    listed = next((key for key in server.api_keys if key.id == key_id), None)
    limit = listed.requests_per_minute if listed and listed.requests_per_minute else server.requests_per_minute_per_key
    wait = state.rate_limits.acquire(key_id, limit)
    if wait > 0:
        log.info(
            "request %s refused: key %s over %s requests a minute",
            rid,
            key_id,
            limit,
            extra={"event": "rate_limited", "request_id": rid, "key_id": key_id, "status": 429},
        )
        return error_response(
            429,
            f"rate limit reached: {limit} requests a minute for this key",
            type_="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    log.debug(
        "request %s from key %s %s",
        rid,
        checked.key_id,
        request.url.path,
        extra={"event": "authenticated", "request_id": rid, "key_id": checked.key_id},
    )
    return None


def _admin_refusal(state: ServerState, request: Request) -> JSONResponse | None:
    """None when the request carries the operator's admin bearer token and the guard is loaded; else the
    403, 401 or 503 to answer."""
    env = state.config.server.admin_token_env
    token = os.environ.get(env) if env else None
    if not token:
        return error_response(
            403, f"the admin endpoints are disabled: set {env or 'server.admin_token_env'}", type_="permission_error"
        )
    if request.headers.get("authorization") != f"Bearer {token}":
        return error_response(401, "missing or wrong bearer token", type_="authentication_error")
    if state.guard is None:
        return error_response(503, "not ready", type_="server_error", headers={"Retry-After": "5"})
    return None


@router.get("/v1/guard/explain")
async def guard_explain(request: Request, profile: str = "default") -> JSONResponse:
    """The plan of a profile as ``ValueGuard.explain`` words it (levers, forecast, audits): an admin
    endpoint, since it shows the instructions the guard adds."""
    state = server_state(request)
    refused = _admin_refusal(state, request)
    if refused is not None or state.guard is None:
        return refused or error_response(503, "not ready", type_="server_error")
    plans = state.guard.state.plans
    if profile not in plans:
        return error_response(
            404, f"no profile '{profile}' (profiles: {', '.join(plans)})", param="profile", code="profile_not_found"
        )
    plan = plans[profile]
    return JSONResponse(
        {"profile": profile, "levers": [lever.id for lever in plan.levers], "explanation": state.guard.explain(profile)}
    )


@router.post("/admin/reload")
async def admin_reload(request: Request) -> JSONResponse:
    state = server_state(request)
    refused = _admin_refusal(state, request)
    if refused is not None or state.guard is None:
        return refused or error_response(503, "not ready", type_="server_error")
    try:
        version = await asyncio.to_thread(reload_config, state, True)
    except CausalguardError as exc:  # a bad file or a profile the planner refuses: the old config stays active
        problems = [str(p) for p in exc.problems] if isinstance(exc, ConfigError) else [str(exc)]
        return JSONResponse(
            {
                "error": {
                    "message": str(exc),
                    "type": "invalid_request_error",
                    "param": "config",
                    "code": "invalid_config",
                    "problems": problems,
                }
            },
            status_code=400,
        )
    return JSONResponse({"reloaded": True, "version": version, "profiles": state.config.profile_names})


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    state = server_state(request)
    refused = _client_refusal(state, request)
    if refused is not None:  # counted, with no label a client could choose
        if refused.status_code == 429:
            state.metrics.count_rate_limited()
        else:
            state.metrics.count_invalid("none")
        return refused
    guard = state.guard
    if not state.ready or guard is None:
        return error_response(
            503, "the model is still loading", type_="server_error", code="not_ready", headers={"Retry-After": "5"}
        )
    try:
        call = translate_request(body, guard)
    except RequestRejected as exc:
        log.info(
            "request %s rejected: %s (param %s, code %s)",
            request_id_of(request.scope),
            exc,
            exc.param,
            exc.code,
            extra={
                "event": "rejected",
                "request_id": request_id_of(request.scope),
                "param": exc.param,
                "code": exc.code,
                "status": exc.status,
            },
        )
        named = body.profile or body.model.partition(":")[2]
        asked = named if named in guard.state.plans else "none"
        state.metrics.count_invalid(asked)  # a known profile or 'none': clients cannot mint label values
        return error_response(exc.status, str(exc), type_=exc.type_, param=exc.param, code=exc.code)
    config, profile, messages = guard.config, call.profile, call.messages
    stack = AsyncExitStack()
    try:
        await stack.enter_async_context(state.admission.slot())
    except QueueFullError as exc:
        state.metrics.count_rejected(profile)
        return error_response(
            429, f"server busy: {exc}", type_="rate_limit_error", code="queue_full", headers={"Retry-After": "1"}
        )
    if state.upstream is not None:
        routed = engine_request(guard.state.plan(call.profile), guard.config.upstream)
        upstream = state.upstream_for(routed.base_url)
        return await _proxied(state, upstream, guard, call, body, stack, request, routed)
    kwargs: dict[str, Any] = {
        "profile": profile,
        "max_new_tokens": call.max_new_tokens,
        "temperature": call.temperature,
        "seed": call.seed,
        "top_p": call.top_p,
        "stop": call.stop,
        "timeout_seconds": config.server.request_timeout_seconds,
        "extra_interventions": call.interventions,
    }
    if body.stream:
        trailer = {"usage": call.prompt_tokens} if body.stream_options and body.stream_options.include_usage else {}
        return ClosingStreamingResponse(
            _sse(state, guard, messages, kwargs, body.model, stack, request, trailer), media_type="text/event-stream"
        )
    async with stack:
        cancel = Cancellation()
        job = asyncio.ensure_future(asyncio.to_thread(guard.generate, messages, cancel=cancel, **kwargs))
        try:
            # generate() itself gives up at the timeout (plus a grace when the decode loop is stuck);
            # this wait is the backstop that never lets a request outlive both
            reply = await asyncio.wait_for(
                asyncio.shield(job), config.server.request_timeout_seconds + 2 * DEADLINE_GRACE_SECONDS
            )
        except TimeoutError:
            cancel.cancel("timeout")
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(job), DEADLINE_GRACE_SECONDS)
            return error_response(504, "generation timed out", type_="server_error", code="timeout")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": reply.finish_reason}
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
        "causalguard": {
            "profile": reply.profile,
            "levers": list(reply.levers),
            **({"scores": reply.scores} if reply.scores is not None else {}),
        },
    }


async def _sse(
    state: ServerState,
    guard: ValueGuard,
    messages: list[dict[str, str]],
    kwargs: dict[str, Any],
    model: str,
    stack: AsyncExitStack,
    request: Request,
    trailer: dict[str, int],
) -> AsyncIterator[str]:
    """SSE chunks; a client that disconnects cancels generation, which releases its slot. The last chunk
    names the profile and levers applied (``causalguard``); with ``stream_options.include_usage`` a usage
    chunk follows, as OpenAI sends it (``trailer["usage"]`` holds the prompt tokens).

    The disconnect is polled between tokens: uvicorn drops writes to a closed connection silently,
    so waiting for a failed write would let the generation run to its end."""
    cancel = Cancellation()
    report: dict[str, Any] = {}
    pieces: ThreadedIterator[str] = ThreadedIterator(
        guard.stream(messages, cancel=cancel, report=report, **kwargs), cancel
    )
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    deadline = time.monotonic() + guard.config.server.request_timeout_seconds

    def chunk(delta: dict[str, str], finish: str | None, **extra: Any) -> str:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    applied = applied_levers(guard, kwargs["profile"])

    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                cancel.cancel("timeout")
                await pieces.aclose()
                yield sse_error("generation timed out")
                break
            piece = await asyncio.wait_for(pieces.next(), remaining) if remaining > 0 else None
            if piece is None:
                scores = report.get("scores")
                yield chunk(
                    {},
                    report.get("finish_reason", "stop"),
                    causalguard={**applied, "scores": scores} if scores is not None else applied,
                )
                if "usage" in trailer:
                    done = int(report.get("completion_tokens", 0))
                    usage = {
                        "prompt_tokens": trailer["usage"],
                        "completion_tokens": done,
                        "total_tokens": trailer["usage"] + done,
                    }
                    body = {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                    yield f"data: {json.dumps(body)}\n\n"
                break
            if await request.is_disconnected():
                break  # finally: cancel generation, release the slot
            yield chunk({"content": piece}, None)
        yield "data: [DONE]\n\n"
    except TimeoutError:
        cancel.cancel("timeout")
        yield sse_error("generation timed out")
        yield "data: [DONE]\n\n"
    except Exception as exc:  # after the first byte the status is sent: say what failed in the stream itself
        cancel.cancel("error")
        log.error(
            "stream failed after the first chunk: %s",
            type(exc).__name__,
            exc_info=not isinstance(exc, CausalguardError),
        )
        what = str(exc) if isinstance(exc, CausalguardError) else "internal error (see the server log)"
        yield sse_error(f"generation failed: {what}")
        yield "data: [DONE]\n\n"
    finally:
        # Shielded: when the client is gone, the task is cancelled and every unshielded await here would
        # raise at once, releasing the slot before generation has stopped.
        with anyio.CancelScope(shield=True):
            await pieces.aclose()
            await stack.aclose()


async def _proxied(
    state: ServerState,
    upstream: Upstream,
    guard: ValueGuard,
    call: GuardCall,
    body: ChatCompletionRequest,
    stack: AsyncExitStack,
    request: Request,
    routed: EngineRequest,
) -> Any:
    """Proxy mode: the plan's role levers composed into the system message, generation upstream (the one
    ``routed`` names, with its extra body fields: the engine's own levers). The
    guard's own request timeout cancels the upstream call (its connection is closed); generated tokens
    come from the upstream's ``usage`` (else the local tokenizer's count of the reply)."""
    plan = guard.state.plan(call.profile)
    messages = compose_messages(call.messages, guard.config.system_prompt, plan.role_instructions())
    applied = applied_levers(guard, call.profile)
    payload = upstream.payload(
        messages,
        max_tokens=call.max_new_tokens,
        temperature=call.temperature,
        seed=call.seed,
        stream=body.stream,
        top_p=call.top_p,
        stop=call.stop,
    )
    payload.update(routed.body)  # levers the engine applies itself (its LoRA adapters' scales)
    started = time.perf_counter()
    timeout = guard.config.server.request_timeout_seconds
    if not body.stream:
        async with stack:
            try:
                reply = await asyncio.wait_for(upstream.complete(payload), timeout)
            except TimeoutError:
                guard.record_request(call.profile, "timeout", time.perf_counter() - started)
                return error_response(504, "generation timed out", type_="server_error", code="timeout")
            except UpstreamError as exc:
                guard.record_request(call.profile, "error", time.perf_counter() - started)
                return error_response(exc.status, str(exc), type_="server_error", code=exc.code)
        guard.record_request(call.profile, "ok", time.perf_counter() - started)
        text = _reply_text(reply)
        tokens = completion_tokens(reply)
        guard.record_tokens(call.profile, tokens if tokens is not None else guard.count_tokens(text))
        scores = await asyncio.to_thread(guard.observe_reply, call.profile, call.messages, text)
        return {
            **reply,
            "model": body.model,
            "causalguard": {**applied, "scores": scores} if scores is not None else applied,
        }
    return ClosingStreamingResponse(
        _proxied_sse(upstream, guard, payload, body.model, applied, stack, request, started, call.messages, timeout),
        media_type="text/event-stream",
    )


def _reply_text(reply: dict[str, Any]) -> str:
    """The assistant text of an upstream chat completion ('' when it has none)."""
    choices = reply.get("choices")
    message = (
        choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    )
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


async def _proxied_sse(
    upstream: Upstream,
    guard: ValueGuard,
    payload: dict[str, Any],
    model: str,
    applied: dict[str, Any],
    stack: AsyncExitStack,
    request: Request,
    started: float,
    messages: list[dict[str, str]],
    timeout: float,
) -> AsyncIterator[str]:
    """The upstream's chunks, relabelled; the finished reply goes to the live monitor (its scores ride on
    the finishing chunk with ``monitor.expose_scores``; a stream the upstream ends without one is observed at
    its end), a stream stopped early is only counted. Tokens are
    the chunks that carry text (or the upstream's ``usage`` when a chunk holds it); the time to the first
    of them is the request's time to first token. The guard's request timeout ends the stream with an
    error chunk and closes the upstream connection."""
    outcome: RequestOutcome = "error"
    chunks = upstream.stream(payload)
    text: list[str] = []
    pieces = 0
    usage: int | None = None
    observed = False
    profile = applied["profile"]
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                if await request.is_disconnected():
                    outcome = "cancelled"
                    break  # closing the upstream stream below cancels its generation
                chunk["model"] = model
                counted = completion_tokens(chunk)
                usage = counted if counted is not None else usage
                choices = chunk.get("choices")
                choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
                delta = choice.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("content"), str) and delta["content"]:
                    if not pieces:
                        guard.record_first_token(profile, time.perf_counter() - started)
                    pieces += 1
                    text.append(delta["content"])
                if choice.get("finish_reason"):
                    scores = await asyncio.to_thread(guard.observe_reply, profile, messages, "".join(text))
                    observed = True
                    chunk["causalguard"] = {**applied, "scores": scores} if scores is not None else applied
                yield f"data: {json.dumps(chunk)}\n\n"
            else:
                outcome = "ok"
                if not observed:  # the upstream ended without a finishing chunk (llama.cpp does, for empty replies)
                    await asyncio.to_thread(guard.observe_reply, profile, messages, "".join(text))
                    observed = True
                yield "data: [DONE]\n\n"
    except TimeoutError:
        outcome = "timeout"
        yield sse_error("generation timed out", code="timeout")
        yield "data: [DONE]\n\n"
    except UpstreamError as exc:
        yield sse_error(str(exc), code=exc.code)
        yield "data: [DONE]\n\n"
    finally:
        with anyio.CancelScope(shield=True):
            await chunks.aclose()
            await stack.aclose()
            guard.record_tokens(profile, usage if usage is not None else pieces)
            guard.record_request(profile, outcome, time.perf_counter() - started)
            if outcome == "cancelled" and not observed:
                guard.observe_cancelled(applied["profile"])
