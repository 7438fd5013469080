"""An ASGI middleware that rejects a missing or malformed Host header before Quart runs.

Quart builds absolute URLs from the Host header, and werkzeug raises on some malformed
names while Quart sets up the request, before any request hook can respond with JSON.
Checking here gives every such request the same JSON ``400``, and lets the fast paths
behind this middleware trust the header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .api.common import host_error, host_is_valid
from .fastpath import encode_json, send_response


class HostGuard:
    """Wrap an ASGI app, responding itself to requests with a bad Host header."""

    def __init__(self, app: Any, dumps: Callable[[Any], str]) -> None:
        self.app = app
        self.dumps = dumps

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or host_is_valid(scope):
            await self.app(scope, receive, send)
            return

        if scope["type"] == "websocket":
            # Closing before the handshake makes the server respond with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        error = host_error(host.decode("latin-1"))
        await send_response(send, encode_json(self.dumps, 400, error.body(), {}))
