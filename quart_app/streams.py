"""Event streams for subscribers: replay from the stored log, then live events from the bus.

This module does not use the web framework. The Quart routes and the ASGI fast path
both open streams here and send the chunks they yield.

A subscriber follows a shared channel of recent events. When it falls so far behind that
the channel no longer contains what it missed, it catches up from the store's event log.
A slow reader so costs the server a fixed amount of memory, and it still receives every
event once, in order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from .errors import BadRequestError
from .events import (
    TERMINAL_EVENT_KINDS,
    Event,
    EventKind,
    StreamClosedError,
    SubscriberLaggedError,
    Subscription,
)
from .jobs import JobStatus, utcnow
from .sse import encode_comment, encode_event, encode_retry
from .views import job_links

if TYPE_CHECKING:
    from .scheduler import Scheduler

logger = logging.getLogger(__name__)

# Events read from the log in one query while catching up.
CATCH_UP_BATCH = 500
# Replays longer than this start over from a snapshot instead.
MAX_REPLAY = 10_000
# Event ids are SQLite integers, at most 2**63 - 1.
MAX_EVENT_ID_LENGTH = 18

HEARTBEAT = encode_comment("ping")

EventFilter = Callable[[Event], bool]


class EventReader:
    """Every event after ``cursor`` that passes ``accept``, each once and in id order."""

    def __init__(
        self,
        scheduler: Scheduler,
        subscription: Subscription,
        cursor: int,
        *,
        job_id: str | None = None,
        accept: EventFilter | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._subscription = subscription
        self.cursor = cursor
        self._job_id = job_id
        self._accept = accept
        # A list, not a deque: an empty deque costs 760 bytes on each of thousands of streams.
        self._backlog: list[Event] = []
        self._catching_up = False
        self._beats_seen = scheduler.bus.beats

    def accepts(self, event: Event) -> bool:
        return self._accept is None or self._accept(event)

    async def replay(self) -> None:
        """Queue the stored events after the cursor; call after subscribing, so none is lost."""
        await self._read_backlog()

    async def next(self) -> Event | None:
        """Return the next event, or ``None`` when the bus requests a heartbeat.

        Raise ``StreamClosedError`` once the service closes its streams. Heartbeats come
        from the bus on a fixed interval, so a stream whose events are all filtered out
        still gets them on time.
        """
        while True:
            while self._backlog:
                event = self._backlog.pop(0)
                if self._wanted(event):
                    return event

            if self._catching_up:
                await self._read_backlog()
                continue
            try:
                self._backlog.extend(self._subscription.take())
            except SubscriberLaggedError:
                await self._read_backlog()
                continue
            if self._backlog:
                continue

            beats = self._scheduler.bus.beats
            if beats != self._beats_seen:
                self._beats_seen = beats
                return None
            await self._subscription.wait()

    def _wanted(self, event: Event) -> bool:
        if event.id <= self.cursor:
            return False
        if self._job_id is not None and event.job_id != self._job_id:
            return False
        self.cursor = event.id
        return self.accepts(event)

    async def _read_backlog(self) -> None:
        events = await self._scheduler.store.events_after(
            self.cursor, CATCH_UP_BATCH, job_id=self._job_id
        )
        self._backlog.extend(events)
        # A full batch means more remain in the log; read them before the live events.
        self._catching_up = len(events) == CATCH_UP_BATCH


class SendWatchdog:
    """Cancel the task of a stream whose client has not taken a chunk within the timeout.

    Streams report when a send starts and ends. One sweep every fraction of the timeout
    finds the stuck ones, which costs far less than a timer per chunk on a large fan-out.
    Cancelling the task closes the connection, and the client's reconnect resumes from its
    ``Last-Event-ID``.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._sending_since: dict[asyncio.Task[Any], float] = {}

    def sending(self, task: asyncio.Task[Any]) -> None:
        self._sending_since[task] = time.monotonic()

    def sent(self, task: asyncio.Task[Any]) -> None:
        self._sending_since.pop(task, None)

    async def run(self) -> None:
        period_s = min(max(self.timeout_s / 4, 0.01), 1.0)
        while True:
            await asyncio.sleep(period_s)
            self.sweep()

    def sweep(self) -> None:
        deadline = time.monotonic() - self.timeout_s
        stuck = [task for task, since in self._sending_since.items() if since < deadline]
        for task in stuck:
            del self._sending_since[task]
            task.cancel()
        if stuck:
            logger.warning(
                "dropped %d slow event stream subscribers: a send took over %.1f s",
                len(stuck),
                self.timeout_s,
            )


def event_filter(task: str | None, statuses: frozenset[JobStatus] | None) -> EventFilter | None:
    """Return a filter for the all-jobs stream, or ``None`` when it accepts every event."""
    if task is None and statuses is None:
        return None

    def accept(event: Event) -> bool:
        if task is not None and event.data.get("task") != task:
            return False
        return statuses is None or event.data.get("status") in statuses

    return accept


def is_terminal(event: Event) -> bool:
    return event.kind in TERMINAL_EVENT_KINDS


def parse_last_event_id(value: str | None) -> int | None:
    """Read a ``Last-Event-ID`` value; ``None`` when it is missing or blank."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_EVENT_ID_LENGTH:
        raise BadRequestError(
            f"invalid Last-Event-ID {value[:40]!r}: send back the id of the last event "
            "received, unchanged, or leave it out to start from the current state"
        )
    return int(value)


async def resume_point(scheduler: Scheduler, value: str | None) -> int | None:
    """Return the client's resume point; ``None`` when it has none or it is unusable.

    An id past the end of the event log comes from another database (a restarted
    ``memory://`` store, say), so the stream starts over from the current state.
    """
    last_id = parse_last_event_id(value)
    if last_id is not None and last_id > await scheduler.store.last_event_id():
        return None
    return last_id


async def replay_too_long(scheduler: Scheduler, after_id: int) -> bool:
    """Tell whether resuming after ``after_id`` would skip purged events or replay too many."""
    first_id = await scheduler.store.first_event_id()
    last_id = await scheduler.store.last_event_id()
    purged_gap = first_id > after_id + 1 and first_id > 0
    return purged_gap or last_id - after_id > MAX_REPLAY


async def open_job_stream(
    scheduler: Scheduler, job_id: str, last_event_id: str | None, root_path: str
) -> AsyncGenerator[bytes, None] | None:
    """Check a request for one job's stream and return its chunks.

    Return ``None`` when the client already has the job's terminal event: responding to that
    with ``204 No Content`` makes ``EventSource`` stop reconnecting. Raise ``AppError``
    for an unknown job, a bad ``Last-Event-ID`` or a full server, before anything is sent.
    """
    job = await scheduler.get(job_id)
    last_id = await resume_point(scheduler, last_event_id)
    terminal_id = await scheduler.store.last_event_id(job_id=job.id) if job.is_terminal else None
    if last_id is not None and terminal_id is not None and last_id >= terminal_id:
        return None
    scheduler.check_stream_capacity()
    return _job_chunks(scheduler, job.id, last_id, root_path)


async def open_all_stream(
    scheduler: Scheduler,
    task: str | None,
    statuses: frozenset[JobStatus] | None,
    last_event_id: str | None,
    root_path: str,
) -> AsyncGenerator[bytes, None]:
    """Check a request for the all-jobs stream and return its chunks; raise ``AppError``."""
    last_id = await resume_point(scheduler, last_event_id)
    # An id that cannot be resumed from starts over with snapshots of the active jobs.
    start_over = last_id is None and parse_last_event_id(last_event_id) is not None
    scheduler.check_stream_capacity()
    # A stream of one status follows that status's channel, so the events of jobs in
    # other states do not wake it.
    status = next(iter(statuses)).value if statuses is not None and len(statuses) == 1 else None
    accept = event_filter(task, statuses)
    return _all_chunks(scheduler, last_id, accept, status, root_path, start_over=start_over)


async def _job_chunks(
    scheduler: Scheduler, job_id: str, last_id: int | None, root_path: str
) -> AsyncGenerator[bytes, None]:
    # Subscribing before any read leaves no gap between the stored and the live events.
    with scheduler.open_stream(job_id) as subscription:
        yield encode_retry(scheduler.settings.sse_retry_ms)
        reader = EventReader(scheduler, subscription, last_id or 0, job_id=job_id)
        if last_id is None:
            reader.cursor = await scheduler.store.last_event_id(job_id=job_id)
            job = await scheduler.get(job_id)
            snapshot = snapshot_event(scheduler.describe(job), reader.cursor, job_id)
            yield encode_for_stream(snapshot, root_path)
            if job.is_terminal:
                return
        else:
            await reader.replay()

        while True:
            try:
                event = await reader.next()
            except StreamClosedError:
                return
            if event is None:
                yield HEARTBEAT
                continue
            yield encode_for_stream(event, root_path)
            if is_terminal(event):
                return


async def _all_chunks(
    scheduler: Scheduler,
    last_id: int | None,
    accept: EventFilter | None,
    status: str | None,
    root_path: str,
    *,
    start_over: bool,
) -> AsyncGenerator[bytes, None]:
    with scheduler.open_stream(status=status) as subscription:
        yield encode_retry(scheduler.settings.sse_retry_ms)
        reader = EventReader(scheduler, subscription, 0, accept=accept)
        if last_id is None and not start_over:
            reader.cursor = await scheduler.store.last_event_id()
        elif last_id is None or await replay_too_long(scheduler, last_id):
            # The missed events are gone or too many: start over from the current state.
            reader.cursor = await scheduler.store.last_event_id()
            for job in await scheduler.store.active_jobs(limit=MAX_REPLAY):
                snapshot = snapshot_event(scheduler.describe(job), reader.cursor, job.id)
                if reader.accepts(snapshot):
                    yield encode_for_stream(snapshot, root_path)
        else:
            reader.cursor = last_id
            await reader.replay()

        while True:
            try:
                event = await reader.next()
            except StreamClosedError:
                return
            yield HEARTBEAT if event is None else encode_for_stream(event, root_path)


async def guard_sends(
    chunks: AsyncGenerator[bytes, None], watchdog: SendWatchdog
) -> AsyncGenerator[bytes, None]:
    """Report each send to the watchdog, for servers that send the chunks they iterate.

    The server sends a chunk while this generator is suspended at ``yield``, so the time
    between the ``yield`` and the next step is that send.
    """
    task = asyncio.current_task()
    assert task is not None
    try:
        async for chunk in chunks:
            watchdog.sending(task)
            try:
                yield chunk
            finally:
                watchdog.sent(task)
    finally:
        await chunks.aclose()


# Recently encoded events by (event id, root path): a fan-out to thousands of streams
# encodes each event once. Events never change once stored, so entries never go stale.
ENCODED_CACHE_SIZE = 1024
_encoded: collections.OrderedDict[tuple[int, str], bytes] = collections.OrderedDict()


def encode_for_stream(event: Event, root_path: str) -> bytes:
    """Encode an event for the wire, once per event however many streams send it."""
    if event.kind is EventKind.SNAPSHOT:
        # A snapshot carries one subscriber's view of a job under a real event's id.
        return _encode_uncached(event, root_path)
    key = (event.id, root_path)
    encoded = _encoded.get(key)
    if encoded is None:
        encoded = _encode_uncached(event, root_path)
        _encoded[key] = encoded
        if len(_encoded) > ENCODED_CACHE_SIZE:
            _encoded.popitem(last=False)
    return encoded


def _encode_uncached(event: Event, root_path: str) -> bytes:
    data = {**event.data, "links": job_links(event.job_id, root_path)}
    return encode_event(data, event=event.kind.value, event_id=str(event.id))


def snapshot_event(job_data: dict[str, Any], event_id: int, job_id: str) -> Event:
    """Build a synthetic event that carries a job's current state under a real log id."""
    return Event(id=event_id, job_id=job_id, kind=EventKind.SNAPSHOT, at=utcnow(), data=job_data)
