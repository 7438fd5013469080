"""An ASGI fast path for the hottest read-only routes: ``GET /api?id=`` and ``GET /api/jobs/<id>``.

Pollers call these routes far more often than anything else. This middleware responds to
them without the framework's request handling, using the same response builders as the
Quart routes (``views.py``). Every other request goes to the Quart app, and so does every
case the middleware leaves alone: unknown jobs, bad Host headers, a read that would block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .api.common import HOST_RE
from .jobs import is_job_id
from .storage.base import ReadWouldBlockError
from .views import INVALID_ID, job_links, status_view

if TYPE_CHECKING:
    from collections.abc import Callable

    from .jobs import Job
    from .scheduler import Scheduler


_JOBS_PREFIX = "/api/jobs/"


class FastPath:
    """Wrap an ASGI app, serving job reads directly and passing everything else on."""

    def __init__(self, app: Any, scheduler: Scheduler, dumps: Callable[[Any], str]) -> None:
        self.app = app
        self.scheduler = scheduler
        self.dumps = dumps

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not _host_is_valid(scope):
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        path: str = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]

        if path == "/api":
            handled = await self._status(scope, send, root_path)
        elif path.startswith(_JOBS_PREFIX) and "/" not in path[len(_JOBS_PREFIX) :]:
            handled = await self._job(path[len(_JOBS_PREFIX) :], send, root_path)
        else:
            handled = False
        if not handled:
            await self.app(scope, receive, send)

    async def _status(self, scope: dict[str, Any], send: Any, root_path: str) -> bool:
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        job_id = next((value for name, value in query if name == "id"), "")
        if not is_job_id(job_id):
            await self._respond(send, 400, dict(INVALID_ID), {})
            return True
        readable, job = self._read(job_id)
        if not readable:
            return False
        estimate = self.scheduler.estimate(job) if job is not None else None
        status, body, headers = status_view(job, estimate, root_path)
        await self._respond(send, status, body, headers)
        return True

    async def _job(self, job_id: str, send: Any, root_path: str) -> bool:
        readable, job = self._read(job_id) if is_job_id(job_id) else (False, None)
        if not readable or job is None:
            # Unknown and purged jobs get their 404 or 410 from the Quart route.
            return False
        body = self.scheduler.describe(job)
        body["links"] = job_links(job.id, root_path)
        await self._respond(send, 200, body, {})
        return True

    def _read(self, job_id: str) -> tuple[bool, Job | None]:
        """Return whether the store could read at once, and the job if it exists."""
        try:
            return True, self.scheduler.store.job_nowait(job_id)
        except ReadWouldBlockError:
            return False, None

    async def _respond(
        self, send: Any, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        payload = (self.dumps(body) + "\n").encode()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})


def _host_is_valid(scope: dict[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if name == b"host":
            return HOST_RE.match(value.decode("latin-1")) is not None
    return False
