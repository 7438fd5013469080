"""Event streams for subscribers: replay from the stored log, then live events from the bus.

A subscriber reads from a bounded buffer. When it falls behind and the buffer overflows,
it catches up from the store's event log instead, so a slow reader costs the server a
fixed amount of memory and still receives every event once, in order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .events import TERMINAL_EVENT_KINDS, Event, EventKind, Subscription
from .jobs import JobStatus

if TYPE_CHECKING:
    from .scheduler import Scheduler

logger = logging.getLogger(__name__)

# Events read from the log in one query while catching up.
CATCH_UP_BATCH = 500
# Replays longer than this start over from a snapshot instead.
MAX_REPLAY = 10_000

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
        self._accept = accept or (lambda event: True)
        self._backlog: collections.deque[Event] = collections.deque()

    def accepts(self, event: Event) -> bool:
        return self._accept(event)

    async def replay(self) -> None:
        """Queue the stored events after the cursor; call after subscribing, so none is lost."""
        await self._read_backlog()

    async def next(self, timeout_s: float) -> Event | None:
        """Return the next event, or ``None`` when none arrived within ``timeout_s``.

        Events filtered out do not restart the wait, so a quiet stream on a busy server
        still gets its heartbeat on time.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            if not self._backlog and self._subscription.lagging:
                self._subscription.lagging = False
                # Drain first: anything published after this point is in the buffer again.
                while not self._subscription.queue.empty():
                    self._subscription.queue.get_nowait()
                await self._read_backlog()
            if self._backlog:
                event = self._backlog.popleft()
            else:
                remaining_s = deadline - asyncio.get_running_loop().time()
                received = await self._subscription.get(max(remaining_s, 0.0))
                if received is None:
                    return None
                event = received
            if event.id <= self.cursor:
                continue
            if self._job_id is not None and event.job_id != self._job_id:
                continue
            self.cursor = event.id
            if self._accept(event):
                return event

    async def _read_backlog(self) -> None:
        events = await self._scheduler.store.events_after(
            self.cursor, CATCH_UP_BATCH, job_id=self._job_id
        )
        self._backlog.extend(events)
        if len(events) == CATCH_UP_BATCH:
            # More remain in the log; fetch them once this batch is consumed.
            self._subscription.lagging = True


def event_filter(task: str | None, statuses: frozenset[JobStatus] | None) -> EventFilter:
    def accept(event: Event) -> bool:
        if task is not None and event.data.get("task") != task:
            return False
        return statuses is None or event.data.get("status") in statuses

    return accept


def is_terminal(event: Event) -> bool:
    return event.kind in TERMINAL_EVENT_KINDS


async def replay_too_long(scheduler: Scheduler, after_id: int) -> bool:
    """Tell whether resuming after ``after_id`` would skip purged events or replay too many."""
    first_id = await scheduler.store.first_event_id()
    last_id = await scheduler.store.last_event_id()
    purged_gap = first_id > after_id + 1 and first_id > 0
    return purged_gap or last_id - after_id > MAX_REPLAY


async def with_send_timeout(
    chunks: AsyncIterator[bytes], send_timeout_s: float
) -> AsyncIterator[bytes]:
    """Cancel the response when handing one chunk to the client takes over ``send_timeout_s``.

    The server awaits each send while the generator is suspended at ``yield``, so a timer
    armed around the ``yield`` measures that send. Cancelling the task closes the connection,
    and the client's reconnect resumes from its ``Last-Event-ID``.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    try:
        async for chunk in chunks:
            timer = loop.call_later(send_timeout_s, _cancel_slow_send, task)
            try:
                yield chunk
            finally:
                timer.cancel()
    finally:
        await _close(chunks)


def _cancel_slow_send(task: asyncio.Task[Any]) -> None:
    logger.warning("dropped a slow event stream subscriber: a send timed out")
    task.cancel()


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def snapshot_event(job_data: dict[str, Any], event_id: int, job_id: str) -> Event:
    """Build a synthetic event that carries a job's current state under a real log id."""
    from .jobs import utcnow

    return Event(id=event_id, job_id=job_id, kind=EventKind.SNAPSHOT, at=utcnow(), data=job_data)
