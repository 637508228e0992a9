"""Proxy mode: forward guarded chat completions to an OpenAI-compatible upstream.

The guard composes the conversation exactly as it would for its own model (the operator's system
prompt first, the client's system text, then the plan's role-lever instructions, in one system
message) and sends it with the client's generation fields. Upstream failures map to the OpenAI error
schema: could not connect -> 503, timed out -> 504, any upstream error status -> 502 naming it (429 and
503 -> 503). Connection failures and 502/503 answers are retried ``retries`` times with exponential
backoff before the client sees them. Streams pass through chunk by chunk (one the upstream closes before
``[DONE]`` or a ``finish_reason`` ends in an error chunk); closing the stream (a client
that left, or the guard's own request timeout) closes the upstream connection, which cancels the
upstream's generation.

``UpstreamHealth`` is the guard's view of the upstream: a probe of its ``/models`` endpoint every
``health_interval_seconds`` (``probe_forever``, run by the server), corrected at once by every proxied
request that could or could not connect. ``/readyz`` answers 503 while the upstream is down, and the
``causalguard_upstream_up`` gauge follows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from causalguard.config.schema import UpstreamSpec

log = logging.getLogger(__name__)
RETRIED_STATUSES = (502, 503)


@dataclass
class UpstreamHealth:
    """Whether the upstream answers: ``up`` is None until the first probe or request says."""

    up: bool | None = None
    checked_at: float = 0.0  # time.monotonic() of the last verdict
    reason: str = "not probed yet"

    def mark(self, up: bool, reason: str) -> None:
        if up != self.up:
            (log.info if up else log.warning)("upstream is %s: %s", "up" if up else "down", reason)
        self.up, self.checked_at, self.reason = up, time.monotonic(), reason

    def as_dict(self) -> dict[str, Any]:
        age = round(time.monotonic() - self.checked_at, 3) if self.checked_at else None
        return {"up": self.up, "checked_seconds_ago": age, "reason": self.reason}


class UpstreamError(Exception):
    """The upstream could not answer: the status to give the client and why."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Upstream:
    """One pooled HTTP client to the upstream (create at start-up, ``aclose`` at shutdown)."""

    def __init__(
        self, spec: UpstreamSpec, *, api_key: str | None = None, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        key = api_key  # from config.loading.upstream_api_key: never logged
        headers = {"authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(spec.timeout_seconds, connect=spec.connect_timeout_seconds)
        limits = httpx.Limits(max_connections=spec.max_connections, max_keepalive_connections=spec.max_connections)
        self.client = httpx.AsyncClient(
            base_url=spec.base_url.rstrip("/"), headers=headers, timeout=timeout, limits=limits, transport=transport
        )
        self.health = UpstreamHealth()

    async def probe(self) -> bool:
        """Ask the upstream's ``/models`` once (short timeout) and record the verdict."""
        timeout = min(self.spec.connect_timeout_seconds, self.spec.health_interval_seconds, 5.0)
        try:
            response = await self.client.get("/models", timeout=timeout)
        except Exception as exc:  # any failure is a verdict, never a crash of the probe loop
            self.health.mark(False, f"{type(exc).__name__} on GET /models")
            return False
        up = response.status_code < 500
        self.health.mark(up, f"GET /models answered {response.status_code}")
        return up

    async def probe_forever(self) -> None:
        """Probe every ``health_interval_seconds`` until cancelled (the server runs it for its lifetime)."""
        while True:
            await self.probe()
            await asyncio.sleep(self.spec.health_interval_seconds)

    def payload(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stream: bool,
        top_p: float = 1.0,
        stop: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if seed is not None:
            body["seed"] = seed
        if top_p < 1:
            body["top_p"] = top_p
        if stop:
            body["stop"] = list(stop)
        return body

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed completion's JSON."""
        response = await self._send(body, stream=False)
        try:
            doc: dict[str, Any] = response.json()
            return doc
        except ValueError:
            raise UpstreamError(502, "the upstream answered with something that is not JSON", "bad_upstream") from None

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The upstream's stream chunks (parsed ``data:`` lines) until ``[DONE]``. A stream that ends before
        ``[DONE]`` and before any chunk gave a ``finish_reason`` was cut off: that raises, so the client is told
        rather than served a silently truncated reply."""
        response = await self._send(body, stream=True)
        finished = False
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise UpstreamError(
                        502, "the upstream sent a stream chunk that is not JSON", "bad_upstream"
                    ) from None
                if "error" in chunk:
                    raise UpstreamError(502, f"the upstream failed mid-stream: {_message(chunk)}", "upstream_error")
                finished = finished or _finishes(chunk)
                yield chunk
            if not finished:
                raise UpstreamError(
                    502,
                    "the upstream closed its stream before it finished (no finish_reason, no [DONE])",
                    "upstream_error",
                )
        except httpx.TimeoutException:
            raise UpstreamError(504, "the upstream timed out mid-stream", "upstream_timeout") from None
        except httpx.TransportError as exc:
            raise UpstreamError(
                502, f"the upstream connection failed mid-stream ({type(exc).__name__})", "upstream_error"
            ) from None
        finally:
            await response.aclose()

    async def _send(self, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        request = self.client.build_request("POST", "/chat/completions", json=body)
        for attempt in range(self.spec.retries + 1):
            last = attempt == self.spec.retries
            try:
                response = await self.client.send(request, stream=stream)
            except httpx.ConnectError:
                self.health.mark(False, "a request could not connect")
                if last:
                    raise UpstreamError(
                        503, f"could not connect to the upstream after {attempt + 1} attempts", "upstream_unavailable"
                    ) from None
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            except httpx.TimeoutException:
                raise UpstreamError(504, "the upstream timed out", "upstream_timeout") from None
            self.health.mark(True, f"a request was answered {response.status_code}")
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                if response.status_code in RETRIED_STATUSES and not last:
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                detail = _message(_json_or_none(response)) or response.text[:200]
                status = 503 if response.status_code in (429, 503) else 502
                tries = f" (after {attempt + 1} attempts)" if response.status_code in RETRIED_STATUSES else ""
                raise UpstreamError(
                    status, f"the upstream answered {response.status_code}{tries}: {detail}", "upstream_error"
                )
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.client.aclose()


def _finishes(chunk: dict[str, Any]) -> bool:
    """Whether a stream chunk ends its choice (carries a ``finish_reason``)."""
    choices = chunk.get("choices")
    return isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(doc: Any) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return str(doc["error"].get("message", ""))[:300]
    return ""


def completion_tokens(doc: Any) -> int | None:
    """``usage.completion_tokens`` of an upstream completion or final stream chunk (None when absent)."""
    usage = doc.get("usage") if isinstance(doc, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None
