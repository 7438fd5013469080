"""A plain ASGI SSE broadcaster on Hypercorn: the server's floor for the fan-out comparison.

``POST /publish`` sends the current time to every subscriber of ``GET /events``. Subscribers
wait on one shared ``asyncio.Event``, so a message costs one wake-up and one send each.
It never reads ``receive``, so the stream of a closed connection ends only when the server
stops, which is enough for one benchmark run.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
JSON = [(b"content-type", b"application/json")]


class Hub:
    def __init__(self) -> None:
        self.message = b""
        self.count = 0
        self.published = asyncio.Event()

    def publish(self, message: bytes) -> None:
        self.message = message
        self.published.set()
        self.published.clear()

    async def wait(self) -> bytes:
        await self.published.wait()
        return self.message


hub = Hub()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/events":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
        hub.count += 1
        try:
            while True:
                message = await hub.wait()
                await send({"type": "http.response.body", "body": message, "more_body": True})
        finally:
            hub.count -= 1
    if path == "/publish":
        data = json.dumps({"sent_at": time.time()})
        hub.publish(f"event: tick\ndata: {data}\n\n".encode())
    body = json.dumps({"streams": hub.count}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": JSON})
    await send({"type": "http.response.body", "body": body})
