"""An ASGI fast path for the hottest read-only routes: ``GET /api?id=`` and ``GET /api/jobs/<id>``.

Pollers call these routes far more often than anything else. This middleware responds to
them without the framework's request handling, using the same response builders as the
Quart routes (``views.py``). Every other request goes to the Quart app, and so does every
case the middleware leaves alone: unknown jobs, bad Host headers, a read that would block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .api.common import route_path
from .jobs import is_job_id
from .storage.base import ReadWouldBlockError
from .views import INVALID_ID, has_fixed_views, job_links, status_view

if TYPE_CHECKING:
    from collections.abc import Callable

    from .jobs import Job
    from .scheduler import Scheduler


_JOBS_PREFIX = "/api/jobs/"

# Keys of the two cached routes: the ``/api?id=`` status and the ``/api/jobs/<id>`` resource.
_STATUS = "status"
_RESOURCE = "resource"

# Encoded responses kept at most, for finished jobs only. The oldest is dropped first.
MAX_CACHED_RESPONSES = 1024


class FastPath:
    """Wrap an ASGI app, serving job reads directly and passing everything else on."""

    def __init__(self, app: Any, scheduler: Scheduler, dumps: Callable[[Any], str]) -> None:
        self.app = app
        self.scheduler = scheduler
        self.dumps = dumps
        self._responses: dict[tuple[str, str], _CachedResponse] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = route_path(scope, "GET")
        if path is None:
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")

        if path == "/api":
            handled = await self._status(scope, send, root_path)
        elif path.startswith(_JOBS_PREFIX) and "/" not in path[len(_JOBS_PREFIX) :]:
            handled = await self._job(path[len(_JOBS_PREFIX) :], send, root_path)
        else:
            handled = False
        if not handled:
            await self.app(scope, receive, send)

    async def _status(self, scope: dict[str, Any], send: Any, root_path: str) -> bool:
        job_id = _job_id_from_query(scope["query_string"])
        if job_id is None:
            await self._respond(send, 400, dict(INVALID_ID), {})
            return True
        readable, job = self._read(job_id)
        if not readable:
            return False
        if job is None:
            response = self._encode(*status_view(None, None, root_path))
        else:
            response = self._cached(_STATUS, job, root_path) or self._status_response(
                job, root_path
            )
        await send_response(send, response)
        return True

    def _status_response(self, job: Job, root_path: str) -> JSONResponse:
        estimate = self.scheduler.estimate(job)
        response = self._encode(*status_view(job, estimate, root_path))
        self._remember(_STATUS, job, root_path, response)
        return response

    async def _job(self, job_id: str, send: Any, root_path: str) -> bool:
        readable, job = self._read(job_id) if is_job_id(job_id) else (False, None)
        if not readable or job is None:
            # Unknown and purged jobs get their 404 or 410 from the Quart route.
            return False
        response = self._cached(_RESOURCE, job, root_path) or self._job_response(job, root_path)
        await send_response(send, response)
        return True

    def _job_response(self, job: Job, root_path: str) -> JSONResponse:
        body = self.scheduler.describe(job)
        body["links"] = job_links(job.id, root_path)
        response = self._encode(200, body, {})
        self._remember(_RESOURCE, job, root_path, response)
        return response

    def _read(self, job_id: str) -> tuple[bool, Job | None]:
        """Return whether the store could read at once, and the job if it exists."""
        try:
            return True, self.scheduler.store.job_nowait(job_id)
        except ReadWouldBlockError:
            return False, None

    async def _respond(
        self, send: Any, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        await send_response(send, self._encode(status, body, headers))

    # Cached responses ------------------------------------------------------------------

    def _cached(self, route: str, job: Job, root_path: str) -> JSONResponse | None:
        """Return the response encoded earlier for this very ``Job`` object, if any.

        The store returns a new object whenever the row may have changed, so an entry made
        for the same object is current. After a purge the store returns ``None``, so the
        entry is never consulted.
        """
        entry = self._responses.get((route, job.id))
        if entry is None or entry.job is not job or entry.root_path != root_path:
            return None
        return entry.response

    def _remember(self, route: str, job: Job, root_path: str, response: JSONResponse) -> None:
        if not has_fixed_views(job):
            return
        if len(self._responses) >= MAX_CACHED_RESPONSES:
            del self._responses[next(iter(self._responses))]
        self._responses[(route, job.id)] = _CachedResponse(job, root_path, response)

    def _encode(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> JSONResponse:
        return encode_json(self.dumps, status, body, headers)


@dataclass(frozen=True, slots=True)
class JSONResponse:
    """An encoded response. The headers are a tuple, so that it can be sent many times."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    payload: bytes


@dataclass(frozen=True, slots=True)
class _CachedResponse:
    job: Job
    root_path: str
    response: JSONResponse


def encode_json(
    dumps: Callable[[Any], str], status: int, body: Any, headers: dict[str, str]
) -> JSONResponse:
    """Encode a JSON response as the Quart routes send it, with ``Cache-Control: no-store``."""
    payload = (dumps(body) + "\n").encode()
    raw_headers = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *((name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()),
    )
    return JSONResponse(status, raw_headers, payload)


async def send_response(send: Any, response: JSONResponse) -> None:
    # Each response gets new messages, because a server may keep or change a message.
    start = {"type": "http.response.start", "status": response.status, "headers": response.headers}
    await send(start)
    await send({"type": "http.response.body", "body": response.payload})


def _job_id_from_query(query_string: bytes) -> str | None:
    """Return the first ``id`` parameter, as ``parse_qsl`` finds it, if it is a valid job id.

    Pollers send ``id=<job id>`` and nothing else. A job id contains no ``&``, ``%`` or
    ``+``, so such a query has exactly one parameter and needs no decoding.
    """
    if query_string.startswith(b"id="):
        candidate = query_string[3:].decode("latin-1")
        if is_job_id(candidate):
            return candidate
    query = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    job_id = next((value for name, value in query if name == "id"), "")
    return job_id if is_job_id(job_id) else None
