"""``/ws``: one socket to follow many jobs, and to submit and cancel them.

Client messages are JSON objects with a ``type``:
``{"type": "subscribe", "jobs": [id, ...]}`` or ``{"type": "subscribe", "all": true}``,
``{"type": "unsubscribe", ...}`` of the same shape, ``{"type": "submit", "job": {...}}``
with a ``POST /api/jobs`` body, ``{"type": "cancel", "id": id}`` and ``{"type": "ping"}``.
A ``ref`` in a message is echoed in its reply. Events arrive as
``{"type": "event", "event": kind, "id": event_id, "job": {...}}``. A bad message gets an
``{"type": "error", "message": ...}`` frame and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from quart import Blueprint, websocket

from ..errors import AppError, BadRequestError, UnavailableError
from ..events import Event, StreamClosedError, Subscription
from ..jobs import is_job_id
from ..scheduler import Scheduler
from ..streams import EventReader, snapshot_event
from ..views import job_links
from .common import parse_json, scheduler, submission_from

logger = logging.getLogger(__name__)

blueprint = Blueprint("websocket", __name__)

# Job ids one socket may follow individually; "all" has no limit.
MAX_SUBSCRIBED_JOBS = 1000
MAX_MESSAGE_BYTES = 64 * 1024


@blueprint.websocket("/ws")
async def feed() -> None:
    current = scheduler()
    current.check_stream_capacity()
    with current.open_stream() as subscription:
        await websocket.accept()
        session = FeedSession(current, subscription, websocket.root_path)
        await session.run()


class FeedSession:
    """One client's subscriptions, its incoming commands and its outgoing events."""

    def __init__(self, current: Scheduler, subscription: Subscription, root_path: str) -> None:
        self._scheduler = current
        self._root_path = root_path
        self._all = False
        self._jobs: set[str] = set()
        self._reader = EventReader(current, subscription, 0, accept=self._wants)
        self._send_lock = asyncio.Lock()
        # Per job: the event id its last snapshot covers.
        self._cursors: dict[str, int] = {}

    def _wants(self, event: Event) -> bool:
        return self._all or event.job_id in self._jobs

    async def run(self) -> None:
        self._reader.cursor = await self._scheduler.store.last_event_id()
        sender = asyncio.create_task(self._send_events())
        receiver = asyncio.create_task(self._receive_commands())
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        failed = [
            error
            for task in done
            if not task.cancelled() and (error := task.exception()) is not None
        ]
        if any(isinstance(error, TimeoutError) for error in failed):
            # The client stopped reading. Closing lets it reconnect and subscribe again
            # instead of silently missing events.
            logger.warning("closed a WebSocket whose client stopped reading")
            await websocket.close(1008, "send timed out; reconnect and subscribe again")
        elif failed:
            raise failed[0]

    async def _send_events(self) -> None:
        while True:
            try:
                event = await self._reader.next()
            except StreamClosedError:
                await websocket.close(1012, "service restarting")
                return
            if event is None:
                # Heartbeats have no frame on this socket; a client checks the connection
                # with a ping message.
                continue
            async with self._send_lock:
                # Skip events that a snapshot sent meanwhile already covers.
                if event.id > self._cursors.get(event.job_id, 0):
                    await self._send_now(self._event_frame(event))

    async def _receive_commands(self) -> None:
        while True:
            raw = await websocket.receive()
            ref = None
            try:
                message = _parse(raw)
                ref = message.get("ref")
                reply = await self._handle(message)
            except AppError as error:
                reply = {"type": "error", "status": error.status_code, **error.body()}
            if ref is not None:
                reply["ref"] = ref
            await self._send(reply)

    async def _handle(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        if kind == "subscribe":
            return await self._subscribe(message)
        if kind == "unsubscribe":
            return self._unsubscribe(message)
        if kind == "submit":
            return await self._submit(message)
        if kind == "cancel":
            job_id = _job_id(message.get("id"))
            job = await self._scheduler.cancel(job_id)
            return {"type": "cancel", "job": self._job_frame(self._scheduler.describe(job), job.id)}
        if kind == "ping":
            return {"type": "pong"}
        raise BadRequestError(
            f"unknown message type {str(kind)[:40]!r}: use subscribe, unsubscribe, submit, "
            "cancel or ping"
        )

    async def _subscribe(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("all") is True:
            self._all = True
            return {"type": "subscribed", "all": True, "jobs": sorted(self._jobs)}
        job_ids = _job_ids(message.get("jobs"))
        if len(self._jobs | job_ids) > MAX_SUBSCRIBED_JOBS:
            raise BadRequestError(
                f"too many job subscriptions: at most {MAX_SUBSCRIBED_JOBS} per socket; "
                'subscribe with {"all": true} instead'
            )
        # Look every job up first, so an unknown id changes nothing.
        for job_id in sorted(job_ids):
            await self._scheduler.get(job_id)

        # Holding the send lock keeps live events of these jobs behind their snapshots.
        # An event read before the job joined the set was committed before the snapshot
        # below was read, so the snapshot already shows it.
        async with self._send_lock:
            self._jobs |= job_ids
            for job_id in sorted(job_ids):
                event_id = await self._scheduler.store.last_event_id(job_id=job_id)
                job = await self._scheduler.get(job_id)
                self._cursors[job_id] = event_id
                snapshot = snapshot_event(self._scheduler.describe(job), event_id, job_id)
                await self._send_now(self._event_frame(snapshot))
        return {"type": "subscribed", "all": self._all, "jobs": sorted(self._jobs)}

    def _unsubscribe(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("all") is True:
            self._all = False
        else:
            self._jobs -= _job_ids(message.get("jobs"))
        return {"type": "unsubscribed", "all": self._all, "jobs": sorted(self._jobs)}

    async def _submit(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self._scheduler.accepting:
            raise UnavailableError("the service is shutting down and accepts no new jobs")
        body = message.get("job")
        if not isinstance(body, dict):
            raise BadRequestError(
                'a submit message needs "job": an object like the POST /api/jobs body, '
                'for example {"task": "sleep", "params": {"seconds": 5}}'
            )
        job, _ = await self._scheduler.submit(submission_from(body))
        # Follow the new job, so its events reach the client that submitted it, within the
        # same cap as explicit subscriptions.
        following = len(self._jobs) < MAX_SUBSCRIBED_JOBS
        if following:
            self._jobs.add(job.id)
        frame = self._job_frame(self._scheduler.describe(job), job.id)
        return {"type": "submitted", "job": frame, "following": following}

    def _job_frame(self, data: dict[str, Any], job_id: str) -> dict[str, Any]:
        return {**data, "links": job_links(job_id, self._root_path)}

    def _event_frame(self, event: Event) -> dict[str, Any]:
        return {
            "type": "event",
            "event": event.kind.value,
            "id": str(event.id),
            "job": self._job_frame(event.data, event.job_id),
        }

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._send_now(frame)

    async def _send_now(self, frame: dict[str, Any]) -> None:
        # A client that stops reading must not hold the server, so the send has a timeout.
        # asyncio.timeout, unlike wait_for on Python 3.11, never swallows a cancellation.
        async with asyncio.timeout(self._scheduler.settings.sse_send_timeout_s):
            await websocket.send(json.dumps(frame, separators=(",", ":")))


def _parse(raw: str | bytes) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadRequestError(f"message too large: send at most {MAX_MESSAGE_BYTES} bytes")
    return parse_json(raw, example='{"type": "ping"}')


def _job_id(value: Any) -> str:
    if not isinstance(value, str) or not is_job_id(value):
        raise BadRequestError(
            f"invalid job id {str(value)[:40]!r}: use an id returned at submission"
        )
    return value


def _job_ids(value: Any) -> set[str]:
    if not isinstance(value, list) or not value:
        raise BadRequestError(
            'expected "jobs": a non-empty list of job ids, or "all": true for every job'
        )
    return {_job_id(item) for item in value}
