"""Server-sent event streams: one job's events, and every job's events for dashboards."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_response

from ..scheduler import Scheduler
from ..sse import SSE_HEADERS
from ..streams import guard_sends, open_all_stream, open_job_stream, resume_point
from .common import scheduler
from .jobs import parse_statuses
from .schemas import ErrorBody, EventStreamQuery

blueprint = Blueprint("streams", __name__)


@blueprint.get("/api/jobs/<job_id>/events")
@document_querystring(EventStreamQuery)
@document_response(ErrorBody, 404)
async def job_events(job_id: str) -> Response:
    """Stream a job's events: a snapshot first (or the missed events), then live changes.

    The stream ends after the job's terminal event. A reconnect whose ``Last-Event-ID`` is at
    or past that event gets ``204 No Content``, which makes ``EventSource`` stop.
    """
    current = scheduler()
    if request.method == "HEAD":
        await current.get(job_id)
        await resume_point(current, _last_event_id())
        return _head_response(current)
    chunks = await open_job_stream(current, job_id, _last_event_id(), request.root_path)
    if chunks is None:
        # A 204 makes EventSource stop reconnecting to a finished job.
        return Response(b"", status=204, content_type="text/plain")
    return _event_stream_response(current, chunks)


@blueprint.get("/api/events")
@document_querystring(EventStreamQuery)
async def all_events() -> Response:
    """Stream the events of every job, optionally filtered by task and status; never ends."""
    current = scheduler()
    task = request.args.get("task") or None
    statuses = parse_statuses(request.args.get("status"))
    if request.method == "HEAD":
        await resume_point(current, _last_event_id())
        return _head_response(current)
    chunks = await open_all_stream(current, task, statuses, _last_event_id(), request.root_path)
    return _event_stream_response(current, chunks)


def _head_response(current: Scheduler) -> Response:
    # A HEAD request gets the stream's headers without opening a stream.
    current.check_stream_capacity()
    return Response(b"", status=200, headers=SSE_HEADERS)


def _event_stream_response(current: Scheduler, chunks: AsyncGenerator[bytes, None]) -> Response:
    response = Response(guard_sends(chunks, current.send_watchdog), status=200, headers=SSE_HEADERS)
    # Streams live for hours; the app's response timeout must not cut them.
    response.timeout = None
    return response


def _last_event_id() -> str | None:
    """Return ``Last-Event-ID`` as sent, or the ``last_event_id`` query value of plain clients."""
    value = request.headers.get("Last-Event-ID")
    if value is None:
        value = request.args.get("last_event_id")
    return value
