"""Job events and their in-process fan-out.

Every state change and progress update is written to the store's event log in the same
transaction as the change itself, and the log's ids give one order for every process that
shares the store. ``EventFeed`` tails that log and hands each event to the local ``EventBus``
in id order, so subscribers in this process see the events of jobs that any process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    SNAPSHOT = "snapshot"  # sent to a new subscriber, never stored
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    ESTIMATE = "estimate"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Events a subscriber may buffer before it switches to catching up from the log.
SUBSCRIBER_BUFFER = 256

TERMINAL_EVENT_KINDS = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED})


@dataclass(frozen=True)
class Event:
    """One stored state change; ``data`` is the job's representation at that moment."""

    id: int
    job_id: str
    kind: EventKind
    at: datetime
    data: dict[str, Any]


class StreamClosedError(Exception):
    """Raised to a subscriber when the service shuts down its event streams."""


class Subscription:
    """A subscriber's bounded buffer. When it overflows, ``lagging`` is set and events drop.

    A lagging subscriber catches up from the store's event log, which keeps memory bounded
    however slow the reader is.
    """

    def __init__(self, maxsize: int) -> None:
        # ``None`` in the queue marks the end of the stream.
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.lagging = False
        self.closed = False

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagging = True

    def close(self) -> None:
        self.closed = True
        if self.queue.full():
            # The reader would catch up from the log anyway; make room for the end mark.
            self.queue.get_nowait()
            self.lagging = True
        self.queue.put_nowait(None)

    async def get(self, timeout_s: float) -> Event | None:
        """Return the next event, or ``None`` after ``timeout_s``; raise once closed."""
        if self.closed and self.queue.empty():
            raise StreamClosedError
        # asyncio.timeout, unlike wait_for on Python 3.11, never swallows a cancellation
        # that arrives as the wait ends, so a disconnected client's task always stops.
        try:
            async with asyncio.timeout(timeout_s):
                event = await self.queue.get()
        except TimeoutError:
            return None
        if event is None:
            raise StreamClosedError
        return event


class EventBus:
    """Fan-out of events to the subscribers of this process."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @contextlib.contextmanager
    def subscribe(self, maxsize: int = SUBSCRIBER_BUFFER) -> Iterator[Subscription]:
        subscription = Subscription(maxsize)
        if self.closed:
            subscription.close()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def publish(self, event: Event) -> None:
        for subscription in tuple(self._subscriptions):
            subscription.offer(event)

    def close(self) -> None:
        """End every subscription, for example when the service shuts down."""
        self.closed = True
        for subscription in tuple(self._subscriptions):
            subscription.close()


class EventFeed:
    """Tail the store's event log and publish new events on the bus, in id order.

    ``nudge()`` makes the next read happen at once. A local commit calls it, so events of
    this process arrive without waiting for the poll interval. The interval only bounds the
    delay for events written by other processes.
    """

    def __init__(
        self,
        read_after: Callable[[int, int], Awaitable[list[Event]]],
        bus: EventBus,
        poll_interval_s: float,
    ) -> None:
        self._read_after = read_after
        self._bus = bus
        self._poll_interval_s = poll_interval_s
        self._wakeup = asyncio.Event()
        self.last_id = 0

    def nudge(self) -> None:
        self._wakeup.set()

    async def run(self, start_after_id: int) -> None:
        self.last_id = start_after_id
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval_s)
            self._wakeup.clear()
            try:
                await self._drain()
            except Exception:
                # The store may be briefly locked or reconnecting; the next round retries
                # from the same id, so nothing is skipped.
                logger.warning("failed to read the event log; retrying", exc_info=True)

    async def _drain(self) -> None:
        while True:
            events = await self._read_after(self.last_id, 500)
            for event in events:
                self.last_id = event.id
                self._bus.publish(event)
            if len(events) < 500:
                return
