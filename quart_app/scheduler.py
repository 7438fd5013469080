"""The service the routes call: submit, look up, list and cancel jobs.

``Scheduler`` wires the store, the event feed, the estimator and the supervisor together and
owns their start and stop order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pydantic

from .errors import ConflictError, GoneError, NotFoundError, UnavailableError, ValidationError
from .estimates import Estimate, Estimator
from .events import EventBus, EventFeed, Subscription
from .jobs import Job, JobStatus, is_job_id, new_job_id, utcnow
from .storage import from_url
from .streams import SendWatchdog
from .supervisor import CANCELLED_ON_REQUEST, Supervisor

if TYPE_CHECKING:
    from .config import Settings
    from .storage import JobStore
    from .tasks import TaskRegistry

logger = logging.getLogger(__name__)

# How often the event feed reads events written by other processes.
EVENT_POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Submission:
    """A validated request to run a task."""

    task: str
    params: dict[str, Any]
    priority: int = 0
    timeout_s: float | None = None
    max_attempts: int | None = None
    delay_s: float = 0.0
    # The simulated job of POST /api draws its duration at random, so a repeated request
    # with the same Idempotency-Key is recognised by this flag instead of its params.
    simulated: bool = False


class Scheduler:
    """Jobs for one process: the store, its events, the estimator and the supervisor."""

    def __init__(
        self, settings: Settings, registry: TaskRegistry, store: JobStore | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store or from_url(settings.store_url)
        self.bus = EventBus()
        self.feed = EventFeed(self.store.events_after, self.bus, EVENT_POLL_INTERVAL_S)
        self.estimator = Estimator(self.store, registry, settings)
        self.supervisor = Supervisor(self.store, registry, settings)
        self.estimator.worker_id = self.supervisor.worker_id
        self._background: set[asyncio.Task[None]] = set()
        self.accepting = False
        self.send_watchdog = SendWatchdog(settings.sse_send_timeout_s)

    async def start(self) -> None:
        await self.store.open()
        self.store.describe = self.estimator.describe
        self.store.on_events = self.feed.offer
        await self.estimator.refresh()
        last_event_id = await self.store.last_event_id()
        for coroutine in (
            self.feed.run(last_event_id),
            self.estimator.run(self.bus),
            self.bus.run_heartbeat(self.settings.sse_heartbeat_s),
            self.send_watchdog.run(),
        ):
            task = asyncio.create_task(coroutine)
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await self.supervisor.start()
        self.accepting = True

    def begin_shutdown(self) -> None:
        """Refuse new jobs and end every event stream, so connections close promptly."""
        self.accepting = False
        self.bus.close()

    async def stop(self) -> None:
        self.begin_shutdown()
        try:
            await self.supervisor.stop()
        finally:
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            # Open connections keep their threads, and the process, alive.
            await self.store.close()

    # Submissions -----------------------------------------------------------------------

    async def submit(
        self, submission: Submission, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Validate and store a job; return it and whether it is new (not an idempotent replay).

        Raise ``UnknownTaskError`` or ``ValidationError`` for a bad task or params.
        """
        task = self.registry.get(submission.task)
        try:
            params = task.parse_params(submission.params).model_dump(mode="json")
        except pydantic.ValidationError as error:
            raise params_error(submission.task, error) from error

        expected_s = self.estimator.expected_duration_s(submission.task, params)
        timeout_s = submission.timeout_s or self.settings.default_timeout_s
        if expected_s is not None and expected_s > timeout_s:
            raise ValidationError(
                f"task {submission.task!r} with these params runs for {expected_s:g} s, longer "
                f"than the job's timeout of {timeout_s:g} s: set a larger timeout",
                errors=[{"field": "timeout", "problem": f"shorter than the {expected_s:g} s run"}],
            )

        now = utcnow()
        job = Job(
            id=new_job_id(),
            task=submission.task,
            params=params,
            status=JobStatus.QUEUED,
            priority=submission.priority,
            attempt=1,
            max_attempts=submission.max_attempts or self.settings.default_max_attempts,
            timeout_s=timeout_s,
            created_at=now,
            scheduled_at=now + timedelta(seconds=submission.delay_s),
            expected_duration_s=expected_s,
            idempotency_key=idempotency_key,
            request_hash=_request_hash(submission, params) if idempotency_key else None,
        )
        stored, created = await self.store.enqueue(job)
        if created:
            logger.info(
                "enqueued job %s (task %s, priority %d, scheduled_at %s)",
                stored.id,
                stored.task,
                stored.priority,
                stored.scheduled_at.isoformat(),
            )
            # The job's queued event makes the estimator refresh its plan.
            self.supervisor.wake()
        return stored, created

    # Lookups ---------------------------------------------------------------------------

    async def find(self, job_id: str) -> Job | None:
        """Return the job, or ``None`` for a malformed, unknown or purged id."""
        if not is_job_id(job_id):
            return None
        return await self.store.job(job_id)

    async def get(self, job_id: str) -> Job:
        """Return the job; raise ``NotFoundError`` or, once purged, ``GoneError``."""
        job = await self.find(job_id)
        if job is not None:
            return job
        if is_job_id(job_id) and await self.store.is_purged(job_id):
            raise GoneError(
                f"job {job_id} finished more than the retention period ago and was purged; "
                "its result is no longer available"
            )
        raise NotFoundError(f"job {job_id[:64]!r} not found: check the id returned at submission")

    def estimate(self, job: Job) -> Estimate | None:
        return self.estimator.estimate(job)

    def describe(self, job: Job) -> dict[str, Any]:
        return self.estimator.describe(job)

    # Streams ---------------------------------------------------------------------------

    def check_stream_capacity(self) -> None:
        """Raise ``UnavailableError`` when no new stream may open; call before responding.

        The check and the count in ``open_stream`` are separate steps, so a burst of
        concurrent requests can exceed ``max_streams`` by a few.
        """
        if not self.accepting:
            raise UnavailableError("the service is shutting down; reconnect in a few seconds")
        if self.open_streams >= self.settings.max_streams:
            raise UnavailableError(
                f"too many open event streams ({self.open_streams}, the limit set by "
                "SCHEDULER_MAX_STREAMS); retry later or poll GET /api/jobs/<id>"
            )

    def open_stream(self, job_id: str | None = None, *, status: str | None = None) -> Subscription:
        """Subscribe a stream client to one job's events, one status's, or all, and count it.

        Use the result in a ``with`` block. After shutdown has begun, the subscription is
        already closed, so the stream ends.
        """
        return self.bus.subscribe(job_id, status=status, stream=True)

    @property
    def open_streams(self) -> int:
        return self.bus.stream_count

    # Cancellation ----------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask the worker of a running job to stop it.

        Raise ``ConflictError`` when the job already finished.
        """
        job = await self.get(job_id)
        while not job.is_terminal:
            if job.status is JobStatus.QUEUED:
                cancelled = await self.store.mark_cancelled(job, None, CANCELLED_ON_REQUEST)
                if cancelled is not None:
                    logger.info("aborted job %s (reason %s)", job_id, CANCELLED_ON_REQUEST)
                    return cancelled
            else:
                flagged = await self.store.request_cancel(job)
                if flagged is not None:
                    # The worker that holds the job reads the flag at its next lease renewal;
                    # when that is this process, stop the work now.
                    self.supervisor.cancel_local(job_id)
                    return flagged
            # The job changed state between the read and the write; look again.
            job = await self.get(job_id)
        raise ConflictError(
            f"job {job_id} has already {_PAST_TENSE[job.status]}; only queued or running jobs "
            "can be cancelled"
        )


_PAST_TENSE = {
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "been cancelled",
}


def params_error(task: str, error: pydantic.ValidationError) -> ValidationError:
    """Turn pydantic's errors on a task's params into a 422 with one entry per field."""
    errors = []
    for detail in error.errors():
        problem = detail["msg"]
        if detail["type"] != "missing" and "input" in detail:
            problem = f"{problem} (got {json.dumps(detail['input'], default=str)[:100]})"
        field = ".".join(["params", *(str(part) for part in detail["loc"])])
        errors.append({"field": field, "problem": problem})
    summary = "; ".join(f"{item['field']}: {item['problem']}" for item in errors)
    return ValidationError(
        f"invalid params for task {task!r}: {summary}; GET /api/tasks shows the params schema",
        errors=errors,
    )


def _request_hash(submission: Submission, params: dict[str, Any]) -> str:
    if submission.simulated:
        return hashlib.sha256(b"simulated").hexdigest()
    fingerprint = {
        "task": submission.task,
        "params": params,
        "priority": submission.priority,
        "timeout": submission.timeout_s,
        "max_attempts": submission.max_attempts,
        "delay": submission.delay_s,
    }
    encoded = json.dumps(fingerprint, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
