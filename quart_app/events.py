"""Job events and their in-process fan-out.

Every state change and progress update is written to the store's event log in the same
transaction as the change itself, and the log's ids give one order for every process that
shares the store. ``EventFeed`` tails that log and hands each event to the local ``EventBus``
in id order, so subscribers in this process see the events of jobs that any process runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import logging
from collections.abc import Awaitable, Callable
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


# Recent events kept per channel. A subscriber that falls further behind than this catches
# up from the store's event log instead.
ALL_EVENTS_RETAINED = 1024
JOB_EVENTS_RETAINED = 64

TERMINAL_EVENT_KINDS = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED})


@dataclass(frozen=True)
class Event:
    """One stored state change; ``data`` is the job's representation at that moment."""

    id: int
    job_id: str
    kind: EventKind
    at: datetime
    data: dict[str, Any]


# ``None`` for every event, ("job", id) for one job's, ("status", value) for one status.
ChannelKey = tuple[str, str] | None


class StreamClosedError(Exception):
    """Raised to a subscriber when the service shuts down its event streams."""


class SubscriberLaggedError(Exception):
    """Raised when events were dropped from a channel before the subscriber took them."""


class Channel:
    """The recent events of one job, or of every job, shared by all their subscribers.

    Subscribers keep only a position in ``published``. A publish appends once and wakes
    every waiting subscriber through one ``asyncio.Event``, so the cost per subscriber is
    a wake-up, with no queue or timer of its own.
    """

    __slots__ = ("recent", "published", "wakeup", "subscribers")

    def __init__(self, retain: int) -> None:
        self.recent: collections.deque[Event] = collections.deque(maxlen=retain)
        self.published = 0
        self.wakeup = asyncio.Event()
        self.subscribers = 0

    def append(self, event: Event) -> None:
        self.recent.append(event)
        self.published += 1
        self.pulse()

    def pulse(self) -> None:
        # Setting the event resolves every current waiter; clearing it at once makes the
        # next wait block again.
        self.wakeup.set()
        self.wakeup.clear()


class Subscription:
    """One subscriber's position in a channel; leaving the ``with`` block unsubscribes."""

    __slots__ = ("_bus", "_channel", "_key", "_stream", "position")

    def __init__(self, bus: EventBus, channel: Channel, key: ChannelKey, stream: bool) -> None:
        self._bus = bus
        self._channel = channel
        self._key = key
        self._stream = stream
        self.position = channel.published

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bus.unsubscribe(self._channel, self._key, self._stream)

    @property
    def closed(self) -> bool:
        return self._bus.closed

    @property
    def pending(self) -> bool:
        """Tell whether events were published since the last ``take`` or ``skip``."""
        return self._channel.published != self.position

    def skip(self) -> None:
        """Move past every event published so far, for a subscriber that only needs a signal."""
        self.position = self._channel.published

    def take(self) -> list[Event]:
        """Return the events published since the last call, oldest first.

        Raise ``SubscriberLaggedError`` when some of them are no longer retained. The
        position then moves to the newest event, so the caller reads the missed events
        from the store and takes the newer ones from here.
        """
        channel = self._channel
        missed = channel.published - self.position
        if missed == 0:
            return []
        self.position = channel.published
        if missed > len(channel.recent):
            raise SubscriberLaggedError
        if missed == 1:
            return [channel.recent[-1]]
        return list(itertools.islice(channel.recent, len(channel.recent) - missed, None))

    async def wait(self) -> None:
        """Wait for the next publish, heartbeat or close; raise once the bus is closed."""
        if self._bus.closed:
            raise StreamClosedError
        await self._channel.wakeup.wait()


class EventBus:
    """Fan-out of events to the subscribers of this process, through shared channels.

    A subscriber follows one channel: every job's events, one job's, or the events that
    leave jobs in one status, such as ``succeeded``. A subscriber is only woken for events
    of its channel. Channels exist while they have subscribers. ``beat()`` wakes every
    subscriber without an event, and streams then send a heartbeat.
    """

    def __init__(self) -> None:
        self._channels: dict[ChannelKey, Channel] = {}
        # Subscriptions of clients (event streams and sockets), not of internal readers.
        self.stream_count = 0
        self.beats = 0
        self.closed = False

    def subscribe(
        self, job_id: str | None = None, *, status: str | None = None, stream: bool = False
    ) -> Subscription:
        """Follow one job's events, the events with one ``status``, or every event.

        Use the result in a ``with`` block. ``stream`` counts it in ``stream_count``.
        """
        key: ChannelKey = None
        if job_id is not None:
            key = ("job", job_id)
        elif status is not None:
            key = ("status", status)
        channel = self._channels.get(key)
        if channel is None:
            retain = JOB_EVENTS_RETAINED if job_id is not None else ALL_EVENTS_RETAINED
            channel = self._channels[key] = Channel(retain)
        channel.subscribers += 1
        if stream:
            self.stream_count += 1
        return Subscription(self, channel, key, stream)

    def unsubscribe(self, channel: Channel, key: ChannelKey, stream: bool) -> None:
        if stream:
            self.stream_count -= 1
        channel.subscribers -= 1
        if channel.subscribers == 0 and self._channels.get(key) is channel:
            del self._channels[key]

    def publish(self, event: Event) -> None:
        channels = self._channels
        status = str(event.data.get("status"))
        for key in (None, ("job", event.job_id), ("status", status)):
            channel = channels.get(key)
            if channel is not None:
                channel.append(event)

    def beat(self) -> None:
        """Wake every subscriber once, so that idle streams send a heartbeat."""
        self.beats += 1
        for channel in tuple(self._channels.values()):
            channel.pulse()

    async def run_heartbeat(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.beat()

    def close(self) -> None:
        """End every subscription, for example when the service shuts down."""
        self.closed = True
        for channel in tuple(self._channels.values()):
            channel.pulse()


class EventFeed:
    """Tail the store's event log and publish new events on the bus, in id order.

    The store hands over the events that this process commits (``offer``), and they are
    published at once when they directly follow the last published event. Otherwise other
    processes wrote in between, and the feed reads the log first. The poll interval only
    bounds the delay for events of other processes that no local commit follows.
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
        self._running = False
        self.last_id = 0

    def nudge(self) -> None:
        """Read the log now instead of at the next poll."""
        self._wakeup.set()

    def offer(self, events: list[Event]) -> None:
        """Publish events that this process committed, in id order, or read them from the log."""
        if not self._running or events[0].id != self.last_id + 1:
            self.nudge()
            return
        for event in events:
            self.last_id = event.id
            self._bus.publish(event)

    async def run(self, start_after_id: int) -> None:
        self.last_id = start_after_id
        self._running = True
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_interval_s)
                self._wakeup.clear()
                try:
                    await self._drain()
                except Exception:
                    # The store may be briefly locked or reconnecting; the next round
                    # retries from the same id, so nothing is skipped.
                    logger.warning("failed to read the event log; retrying", exc_info=True)
        finally:
            self._running = False

    async def _drain(self) -> None:
        while True:
            events = await self._read_after(self.last_id, 500)
            for event in events:
                # ``offer`` may have published some of them while the read was running.
                if event.id <= self.last_id:
                    continue
                self.last_id = event.id
                self._bus.publish(event)
            if len(events) < 500:
                return
