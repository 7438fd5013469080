"""An ASGI fast path for event streams: ``GET /api/events`` and ``GET /api/jobs/<id>/events``.

A stream lives for hours and one server may hold thousands. Through the framework, each
one keeps a request, a response and a task that listens for the disconnect, and each
chunk passes through the response machinery. Here a stream is one coroutine that sends
the chunks of ``streams.py`` straight to the server, plus a small task that waits for the
disconnect. The Quart routes open the same streams, and they handle every case this
middleware leaves alone: ``HEAD`` and every error response.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .api.common import route_path
from .api.jobs import parse_statuses
from .errors import AppError
from .jobs import is_job_id
from .sse import SSE_HEADERS
from .streams import open_all_stream, open_job_stream

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from .scheduler import Scheduler


_JOBS_PREFIX = "/api/jobs/"
_EVENTS_SUFFIX = "/events"
_STREAM_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()]
_NO_CONTENT_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"0")]


class EventStreamPath:
    """Wrap an ASGI app, serving event streams directly and passing everything else on."""

    def __init__(self, app: Any, scheduler: Scheduler) -> None:
        self.app = app
        self.scheduler = scheduler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = route_path(scope, "GET")
        if path is None:
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")

        handled = False
        if path == "/api/events":
            handled = await self._all_events(scope, receive, send, root_path)
        elif path.startswith(_JOBS_PREFIX) and path.endswith(_EVENTS_SUFFIX):
            job_id = path[len(_JOBS_PREFIX) : -len(_EVENTS_SUFFIX)]
            if is_job_id(job_id):
                handled = await self._job_events(job_id, scope, receive, send, root_path)
        if not handled:
            await self.app(scope, receive, send)

    async def _all_events(
        self, scope: dict[str, Any], receive: Any, send: Any, root_path: str
    ) -> bool:
        query = _query(scope)
        try:
            chunks = await open_all_stream(
                self.scheduler,
                query.get("task") or None,
                parse_statuses(query.get("status")),
                _last_event_id(scope, query),
                root_path,
            )
        except AppError:
            # The Quart route raises the same error and renders it.
            return False
        await self._stream(chunks, receive, send)
        return True

    async def _job_events(
        self, job_id: str, scope: dict[str, Any], receive: Any, send: Any, root_path: str
    ) -> bool:
        query = _query(scope)
        try:
            chunks = await open_job_stream(
                self.scheduler, job_id, _last_event_id(scope, query), root_path
            )
        except AppError:
            return False
        if chunks is None:
            # A 204 makes EventSource stop reconnecting to a finished job.
            start = {"type": "http.response.start", "status": 204, "headers": _NO_CONTENT_HEADERS}
            await send(start)
            await send({"type": "http.response.body", "body": b""})
        else:
            await self._stream(chunks, receive, send)
        return True

    async def _stream(self, chunks: AsyncGenerator[bytes, None], receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        watchdog = self.scheduler.send_watchdog
        await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS})
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, task))
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    # The watchdog cancels this task when the client stops taking data.
                    watchdog.sending(task)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    watchdog.sent(task)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watchdog.sent(task)
            watcher.cancel()


async def _cancel_on_disconnect(receive: Any, task: asyncio.Task[Any]) -> None:
    # The server reports a closed connection only through ``receive``. An idle stream
    # never sends, so without this task it would outlive its client.
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return


def _query(scope: dict[str, Any]) -> dict[str, str]:
    """Return the first value of each query parameter, as Quart's ``request.args.get`` does."""
    query: dict[str, str] = {}
    text = scope["query_string"].decode("utf-8", "replace")
    for name, value in parse_qsl(text, keep_blank_values=True):
        query.setdefault(name, value)
    return query


def _last_event_id(scope: dict[str, Any], query: dict[str, str]) -> str | None:
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            return str(value.decode("latin-1"))
    return query.get("last_event_id")
