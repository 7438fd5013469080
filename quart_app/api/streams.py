"""Server-sent event streams: one job's events, and every job's events for dashboards."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_response

from ..errors import BadRequestError
from ..events import Event, EventKind, StreamClosedError
from ..scheduler import Scheduler
from ..sse import SSE_HEADERS, encode_comment, encode_event, encode_retry
from ..streams import (
    MAX_REPLAY,
    EventFilter,
    EventReader,
    event_filter,
    is_terminal,
    replay_too_long,
    snapshot_event,
    with_send_timeout,
)
from ..views import job_links
from .common import scheduler
from .jobs import parse_statuses
from .schemas import ErrorBody, EventStreamQuery

blueprint = Blueprint("streams", __name__)

# Recently encoded events by (event id, root path): a fan-out to thousands of streams
# encodes each event once. Events never change once stored, so entries never go stale.
ENCODED_CACHE_SIZE = 1024
_ENCODED: collections.OrderedDict[tuple[int, str], bytes] = collections.OrderedDict()

# Event ids are SQLite integers, at most 2**63 - 1.
MAX_EVENT_ID_LENGTH = 18


@blueprint.get("/api/jobs/<job_id>/events")
@document_querystring(EventStreamQuery)
@document_response(ErrorBody, 404)
async def job_events(job_id: str) -> Response:
    """Stream a job's events: a snapshot first (or the missed events), then live changes.

    The stream ends after the job's terminal event. A reconnect whose ``Last-Event-ID`` is at
    or past that event gets ``204 No Content``, which makes ``EventSource`` stop.
    """
    current = scheduler()
    job = await current.get(job_id)
    last_id = await _resume_point(current)
    if request.method == "HEAD":
        return _head_response(current)
    terminal_id = await current.store.last_event_id(job_id=job.id) if job.is_terminal else None
    if last_id is not None and terminal_id is not None and last_id >= terminal_id:
        # A 204 makes EventSource stop reconnecting to a finished job.
        return Response(b"", status=204, content_type="text/plain")

    current.check_stream_capacity()
    chunks = _job_chunks(current, job.id, last_id, request.root_path)
    return _event_stream_response(current, chunks)


@blueprint.get("/api/events")
@document_querystring(EventStreamQuery)
async def all_events() -> Response:
    """Stream the events of every job, optionally filtered by task and status; never ends."""
    current = scheduler()
    accept = event_filter(
        request.args.get("task") or None, parse_statuses(request.args.get("status"))
    )
    last_id = await _resume_point(current)
    if request.method == "HEAD":
        return _head_response(current)
    current.check_stream_capacity()
    chunks = _all_chunks(current, last_id, accept, request.root_path)
    return _event_stream_response(current, chunks)


async def _resume_point(current: Scheduler) -> int | None:
    """Return the client's resume point; ``None`` when it has none or it is unusable.

    An id past the end of the event log comes from another database (a restarted
    ``memory://`` store, say), so the stream starts over from the current state.
    """
    last_id = _last_event_id()
    if last_id is not None and last_id > await current.store.last_event_id():
        return None
    return last_id


def _head_response(current: Scheduler) -> Response:
    # A HEAD request gets the stream's headers without opening a stream.
    current.check_stream_capacity()
    return Response(b"", status=200, headers=SSE_HEADERS)


def _event_stream_response(current: Scheduler, chunks: AsyncIterator[bytes]) -> Response:
    body = with_send_timeout(chunks, current.settings.sse_send_timeout_s)
    response = Response(body, status=200, headers=SSE_HEADERS)
    # Streams live for hours; the app's response timeout must not cut them.
    response.timeout = None
    return response


async def _job_chunks(
    current: Scheduler, job_id: str, last_id: int | None, root_path: str
) -> AsyncIterator[bytes]:
    # Subscribing before any read leaves no gap between the stored and the live events.
    with current.open_stream() as subscription:
        yield encode_retry(current.settings.sse_retry_ms)
        reader = EventReader(current, subscription, last_id or 0, job_id=job_id)
        if last_id is None:
            reader.cursor = await current.store.last_event_id(job_id=job_id)
            job = await current.get(job_id)
            snapshot = snapshot_event(current.describe(job), reader.cursor, job_id)
            yield _encode(snapshot, root_path)
            if job.is_terminal:
                return
        else:
            await reader.replay()

        async for event in _follow(current, reader):
            yield event if isinstance(event, bytes) else _encode(event, root_path)
            if isinstance(event, Event) and is_terminal(event):
                return


async def _all_chunks(
    current: Scheduler, last_id: int | None, accept: EventFilter, root_path: str
) -> AsyncIterator[bytes]:
    with current.open_stream() as subscription:
        yield encode_retry(current.settings.sse_retry_ms)
        reader = EventReader(current, subscription, 0, accept=accept)
        if last_id is None:
            reader.cursor = await current.store.last_event_id()
        elif await replay_too_long(current, last_id):
            # The missed events are gone or too many: start over from the current state.
            reader.cursor = await current.store.last_event_id()
            for job in await current.store.active_jobs(limit=MAX_REPLAY):
                snapshot = snapshot_event(current.describe(job), reader.cursor, job.id)
                if reader.accepts(snapshot):
                    yield _encode(snapshot, root_path)
        else:
            reader.cursor = last_id
            await reader.replay()

        async for event in _follow(current, reader):
            yield event if isinstance(event, bytes) else _encode(event, root_path)


async def _follow(current: Scheduler, reader: EventReader) -> AsyncIterator[Event | bytes]:
    """Yield live events, and a heartbeat comment whenever the stream has been idle."""
    while True:
        try:
            event = await reader.next(current.settings.sse_heartbeat_s)
        except StreamClosedError:
            return
        yield encode_comment("ping") if event is None else event


def _encode(event: Event, root_path: str) -> bytes:
    """Encode an event for the wire, once per event however many streams send it."""
    if event.kind is EventKind.SNAPSHOT:
        # A snapshot carries one subscriber's view of a job under a real event's id.
        return _encode_uncached(event, root_path)
    key = (event.id, root_path)
    encoded = _ENCODED.get(key)
    if encoded is None:
        encoded = _encode_uncached(event, root_path)
        _ENCODED[key] = encoded
        if len(_ENCODED) > ENCODED_CACHE_SIZE:
            _ENCODED.popitem(last=False)
    return encoded


def _encode_uncached(event: Event, root_path: str) -> bytes:
    data = {**event.data, "links": job_links(event.job_id, root_path)}
    return encode_event(data, event=event.kind.value, event_id=str(event.id))


def _last_event_id() -> int | None:
    """Read the resume point from ``Last-Event-ID``, or ``last_event_id`` for plain clients."""
    value = request.headers.get("Last-Event-ID")
    if value is None:
        value = request.args.get("last_event_id")
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_EVENT_ID_LENGTH:
        raise BadRequestError(
            f"invalid Last-Event-ID {value[:40]!r}: send back the id of the last event "
            "received, unchanged, or leave it out to start from the current state"
        )
    return int(value)
