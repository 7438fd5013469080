"""A Quart SSE broadcaster with no scheduler behind it, for the fan-out comparison.

``POST /publish`` sends the current time to every subscriber of ``GET /events``. Each
subscriber has a bounded queue, as a careful Quart app would have.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from quart import Quart, Response

app = Quart(__name__)
subscribers: set[asyncio.Queue[bytes]] = set()


@app.get("/events")
async def events() -> Response:
    async def stream() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(256)
        subscribers.add(queue)
        try:
            yield b"retry: 3000\n\n"
            while True:
                yield await queue.get()
        finally:
            subscribers.discard(queue)

    response = Response(stream(), content_type="text/event-stream")
    response.timeout = None
    return response


@app.post("/publish")
async def publish() -> dict[str, int]:
    data = json.dumps({"sent_at": time.time()})
    message = f"event: tick\ndata: {data}\n\n".encode()
    for queue in tuple(subscribers):
        if not queue.full():
            queue.put_nowait(message)
    return {"subscribers": len(subscribers)}


@app.get("/healthz")
async def health() -> dict[str, int]:
    return {"streams": len(subscribers)}
