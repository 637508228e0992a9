"""Client API keys: who may call ``/v1``, and which key a request came with.

The operator lists keys in ``server.api_keys`` by id and SHA-256 (the config never holds a key itself):
``printf %s "$KEY" | sha256sum``. A request then needs ``Authorization: Bearer <key>``; the digest of
what it sends is compared with every listed digest in constant time. The key's *id* (never the key)
goes into the request's log lines. With no keys listed the endpoint is open, which ``causalguard serve``
allows on a loopback interface only unless ``server.allow_anonymous`` says otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from causalguard.config.schema import ApiKeySpec

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class KeyCheck:
    """The outcome for one request: the key id it authenticated as, or why it is refused."""

    key_id: str | None
    refusal: str | None = None


def check_client_key(authorization: str | None, keys: Sequence[ApiKeySpec]) -> KeyCheck:
    """``authorization`` (the request's header) against the operator's ``keys``: every request passes as
    ``anonymous`` when there are none; else a Bearer token whose SHA-256 matches one listed key, or a
    refusal saying what was wrong (missing, not Bearer, unknown; never echoing the token)."""
    if not keys:
        return KeyCheck(ANONYMOUS)
    if not authorization:
        return KeyCheck(None, "an API key is required: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return KeyCheck(None, "the Authorization header is not 'Bearer <key>'")
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    found = None
    for key in keys:  # every digest compared, so the time does not depend on which one matches
        if hmac.compare_digest(digest, key.sha256):
            found = key.id
    if found is None:
        return KeyCheck(None, "the API key is not valid")
    return KeyCheck(found)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
