"""Proxy mode: forward guarded chat completions to an OpenAI-compatible upstream.

The guard composes the conversation exactly as it would for its own model (the operator's system
prompt first, the client's system text, then the plan's role-lever instructions, in one system
message) and sends it with the client's generation fields. Upstream failures map to the OpenAI error
schema: could not connect (after ``retries``) -> 503, timed out -> 504, any upstream error status
-> 502 naming it. Streams pass through chunk by chunk; closing the stream (a client that left)
closes the upstream connection, which cancels the upstream's generation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from causalguard.config.schema import UpstreamSpec


class UpstreamError(Exception):
    """The upstream could not answer: the status to give the client and why."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Upstream:
    """One pooled HTTP client to the upstream (create at start-up, ``aclose`` at shutdown)."""

    def __init__(self, spec: UpstreamSpec, *, api_key: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.spec = spec
        key = api_key  # from config.loading.upstream_api_key: never logged
        headers = {"authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(spec.timeout_seconds, connect=spec.connect_timeout_seconds)
        limits = httpx.Limits(max_connections=spec.max_connections, max_keepalive_connections=spec.max_connections)
        self.client = httpx.AsyncClient(base_url=spec.base_url.rstrip("/"), headers=headers, timeout=timeout,
                                        limits=limits, transport=transport)

    def payload(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, seed: int | None,
                stream: bool, top_p: float = 1.0, stop: tuple[str, ...] = ()) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.spec.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": temperature, "stream": stream}
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
        """The upstream's stream chunks (parsed ``data:`` lines) until ``[DONE]``."""
        response = await self._send(body, stream=True)
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
                    raise UpstreamError(502, "the upstream sent a stream chunk that is not JSON",
                                        "bad_upstream") from None
                if "error" in chunk:
                    raise UpstreamError(502, f"the upstream failed mid-stream: {_message(chunk)}", "upstream_error")
                yield chunk
        except httpx.TimeoutException:
            raise UpstreamError(504, "the upstream timed out mid-stream", "upstream_timeout") from None
        except httpx.TransportError as exc:
            raise UpstreamError(502, f"the upstream connection failed mid-stream ({type(exc).__name__})",
                                "upstream_error") from None
        finally:
            await response.aclose()

    async def _send(self, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        request = self.client.build_request("POST", "/chat/completions", json=body)
        for attempt in range(self.spec.retries + 1):
            try:
                response = await self.client.send(request, stream=stream)
            except httpx.ConnectError:
                if attempt == self.spec.retries:
                    raise UpstreamError(503, f"could not connect to the upstream after {attempt + 1} attempts",
                                        "upstream_unavailable") from None
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            except httpx.TimeoutException:
                raise UpstreamError(504, "the upstream timed out", "upstream_timeout") from None
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                detail = _message(_json_or_none(response)) or response.text[:200]
                status = 503 if response.status_code in (429, 503) else 502
                raise UpstreamError(status, f"the upstream answered {response.status_code}: {detail}",
                                    "upstream_error")
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.client.aclose()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(doc: Any) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return str(doc["error"].get("message", ""))[:300]
    return ""
