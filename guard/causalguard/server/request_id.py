"""Pure ASGI middleware: every HTTP response carries an ``x-request-id``.

The client's own id is kept when it is short and plain (letters, digits, ``-_.:``, at most 128
characters); otherwise one is generated. Routes read it from ``scope["state"]["request_id"]`` for
their logs. Ids never become metric labels.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

HEADER = b"x-request-id"
_PLAIN = re.compile(rb"^[A-Za-z0-9_.:-]{1,128}$")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def request_id_of(scope: Mapping[str, Any]) -> str:
    """The id the middleware gave this request (``"-"`` outside it)."""
    return str((scope.get("state") or {}).get("request_id", "-"))


class RequestId:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER)
        ident = given if given is not None and _PLAIN.match(given) else f"req-{uuid.uuid4().hex}".encode()
        scope.setdefault("state", {})["request_id"] = ident.decode()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, ident)]}
            await send(message)

        await self.app(scope, receive, send_with_id)
