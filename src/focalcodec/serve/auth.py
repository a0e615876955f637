"""Who may talk to the server: the API key and the WebSocket ``Origin`` check.

* HTTP requests under ``/v1/`` (and ``/metrics``) carry ``Authorization: Bearer KEY``
  when the server has a key.
* A WebSocket carries the key in its start message (``"api_key"``) or as a subprotocol
  ``fcz-key.KEY`` (what a browser can set: it cannot add headers to a WebSocket).
* A WebSocket whose ``Origin`` header names another site is refused before anything is
  read (cross-site WebSocket hijacking: a page elsewhere must not use the visitor's
  access to this server). The server's own origin is allowed, and those given with
  ``--allow-origin``; clients that send no ``Origin`` (programs, not browsers) pass.

Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

__all__ = [
    "KEY_PREFIX",
    "SUBPROTOCOL",
    "bearer_key",
    "key_matches",
    "origin_allowed",
    "pick_subprotocol",
    "subprotocol_key",
]

SUBPROTOCOL = "fcz.v1"  # the subprotocol the server answers with when one is offered
KEY_PREFIX = "fcz-key."


def key_matches(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is the server's key (always true when it has none)."""
    if expected is None:
        return True
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header, or None."""
    value = headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def subprotocol_key(offered: Iterable[str]) -> str | None:
    """The key offered as a ``fcz-key.KEY`` subprotocol, or None."""
    for name in offered:
        if name.startswith(KEY_PREFIX):
            return name[len(KEY_PREFIX) :]
    return None


def pick_subprotocol(offered: Iterable[str]) -> str | None:
    """The subprotocol to accept: ``fcz.v1`` when offered (a browser fails a socket
    whose server picks none of those it offered), else None."""
    return SUBPROTOCOL if SUBPROTOCOL in list(offered) else None


def origin_allowed(
    origin: str | None, host: str | None, allowed: Iterable[str]
) -> bool:
    """Whether a WebSocket from a page at ``origin`` may connect.

    Parameters
    ----------
    origin
        The request's ``Origin`` header (None: not a browser).
    host
        The request's ``Host`` header: the server's own origin is always allowed.
    allowed
        Extra origins (``https://app.example.org``), or ``*`` for any.
    """
    if origin is None:
        return True
    allowed = [a.rstrip("/") for a in allowed]
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    # The same host and port: http or https (a proxy may end TLS before the server).
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host
