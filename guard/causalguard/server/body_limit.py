"""Pure ASGI middleware that refuses request bodies over a size limit with an OpenAI-style 413.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses and client disconnects pass through
untouched. A declared ``content-length`` is checked up front; a body without one is read up to the
limit and replayed to the app.

Ambiguous framing is refused at once with a 400, before any body byte is read (request-smuggling
hygiene, RFC 9112 section 6.3): ``Content-Length`` together with ``Transfer-Encoding``, several
``Content-Length`` headers, or one that is not a plain decimal number. The response closes the
connection, since the rest of that request's bytes cannot be framed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from causalguard.server.schemas import error_body

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class BodyLimit:
    def __init__(self, app: Any, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        raw = list(scope.get("headers") or [])
        lengths = [value for name, value in raw if name.lower() == b"content-length"]
        chunked = any(name.lower() == b"transfer-encoding" for name, _ in raw)
        problem = (
            "Content-Length and Transfer-Encoding together"
            if lengths and chunked
            else "more than one Content-Length header"
            if len(lengths) > 1
            else "a Content-Length that is not a decimal number"
            if lengths and not lengths[0].strip().isdigit()
            else None
        )
        if problem is not None:
            await self._refuse_framing(send, problem)
            return
        declared = lengths[0].strip() if lengths else None
        if declared is not None:
            if declared.isdigit() and int(declared) > limit:
                await self._refuse(send, limit)
                return
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse_framing(send: Send, problem: str) -> None:
        body = json.dumps(
            error_body(
                f"ambiguous request framing: {problem}; send one Content-Length or chunked Transfer-Encoding, not both",
                param="headers",
                code="bad_framing",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = json.dumps(error_body(f"request body over {limit} bytes", code="request_too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
