"""The job store interface and the state bookkeeping that every backend shares.

Public methods decide what a state change means: which fields change and which event is
recorded. Backends implement the underscore hooks. Each hook must apply a change and append
its event in one atomic step, so that a job's row and its event log never disagree.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import ConflictError
from ..events import Event, EventKind
from ..jobs import Job, JobError, JobStatus, utcnow

logger = logging.getLogger(__name__)

Describe = Callable[[Job], dict[str, Any]]


@dataclass(frozen=True)
class Change:
    """A compare-and-set update: apply ``values`` only while the row still matches ``expect``."""

    job_id: str
    expect_status: JobStatus
    values: dict[str, Any]
    event: EventKind | None
    expect_owner: str | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker process, as recorded by its heartbeats."""

    id: str
    concurrency: int
    heartbeat_at: datetime


def worker_identity() -> str:
    """Return ``host:pid:token``, unique per process start, used as the lease owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def owner_is_dead(owner: str) -> bool:
    """Tell whether ``owner`` was a process on this host that no longer runs.

    Only a same-host owner can be checked; for others the lease expiry decides. A reused pid
    makes a dead owner look alive, which only delays recovery until its lease expires.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class ReadWouldBlockError(Exception):
    """Raised by ``JobStore.job_nowait`` when the read cannot finish at once."""


class JobStore(abc.ABC):
    """Durable jobs, results and events. Every method is safe to call from several processes."""

    def __init__(self) -> None:
        self.describe: Describe = Job.to_dict
        # Called on the event loop after each commit that stored events, with those events
        # in id order.
        self.on_events: Callable[[list[Event]], None] = lambda events: None

    # Lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # Reads -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def job(self, job_id: str) -> Job | None:
        """Return the job, or ``None`` when no such job exists (or it was purged)."""

    def job_nowait(self, job_id: str) -> Job | None:
        """Read a job without awaiting, for hot read paths.

        Raise ``ReadWouldBlockError`` when the backend cannot read at once; the caller
        then uses ``job()``. A backend may return the same ``Job`` object again while the
        stored row is unchanged, but must return a new object once the row may differ, so
        a caller may keep data derived from a job for as long as reads return that object.
        Returned jobs may be shared, so callers must not change their ``params`` or
        ``result``. Reads within one turn of the event loop may all return the state as of
        the first of them, which is correct for requests that arrived before it.
        """
        raise ReadWouldBlockError

    @abc.abstractmethod
    async def is_purged(self, job_id: str) -> bool: ...

    @abc.abstractmethod
    async def jobs(
        self,
        *,
        statuses: frozenset[JobStatus] | None = None,
        task: str | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Return jobs newest first, optionally filtered, starting below ``before_seq``."""

    @abc.abstractmethod
    async def active_jobs(self, limit: int) -> list[Job]:
        """Return queued and running jobs in run order (running first, then claim order)."""

    @abc.abstractmethod
    async def recent_durations_s(self, task: str, limit: int) -> list[float]:
        """Return the run times of the task's latest successful jobs, newest first."""

    @abc.abstractmethod
    async def events_after(
        self, after_id: int, limit: int, job_id: str | None = None
    ) -> list[Event]: ...

    @abc.abstractmethod
    async def last_event_id(self, job_id: str | None = None) -> int:
        """Return the id of the newest event (of one job, if given), or 0 when there is none."""

    @abc.abstractmethod
    async def first_event_id(self) -> int:
        """Return the id of the oldest event still stored, or 0 when there is none."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Return the number of jobs in each status."""

    # Workers ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def heartbeat(self, worker_id: str, concurrency: int) -> None: ...

    @abc.abstractmethod
    async def remove_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    async def live_workers(self, since: datetime) -> list[WorkerInfo]: ...

    # Writes ----------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> tuple[Job, bool]:
        """Store a new job; return it and ``True``, or the earlier job with the same
        idempotency key and ``False``. Raise ``ConflictError`` when that key was used for a
        different request."""
        stored, created = await self._insert(job)
        if not created and stored.request_hash != job.request_hash:
            raise ConflictError(
                f"Idempotency-Key {job.idempotency_key!r} was already used for a different "
                f"request (job {stored.id}); send a new key for a new submission"
            )
        return stored, created

    async def claim(self, worker_id: str, lease_s: float, limit: int = 1) -> list[Job]:
        """Atomically take up to ``limit`` due jobs for ``worker_id``, in run order."""
        now = utcnow()
        return await self._claim(worker_id, now, now + timedelta(seconds=lease_s), limit)

    async def renew(self, worker_id: str, lease_s: float) -> list[tuple[str, bool]]:
        """Extend the leases of the worker's running jobs; return ``(job_id, cancel_requested)``
        for each job it still holds."""
        return await self._renew(worker_id, utcnow() + timedelta(seconds=lease_s))

    async def record_progress(
        self, job: Job, owner: str, fraction: float, message: str | None
    ) -> Job | None:
        values = {"progress": fraction, "progress_message": message}
        return await self._apply(
            Change(job.id, JobStatus.RUNNING, values, EventKind.PROGRESS, owner)
        )

    async def succeed(self, job: Job, owner: str, result: Any) -> Job | None:
        values = {
            "status": JobStatus.SUCCEEDED,
            "finished_at": utcnow(),
            "progress": 1.0,
            # The last message described a moment before the end, such as "round 3 of 5".
            "progress_message": None,
            "result": result,
            "error": None,
            "status_reason": None,
            **_NO_LEASE,
        }
        return await self._apply(
            Change(job.id, JobStatus.RUNNING, values, EventKind.SUCCEEDED, owner)
        )

    async def fail(self, job: Job, owner: str | None, error: JobError) -> Job | None:
        values = {
            "status": JobStatus.FAILED,
            "finished_at": utcnow(),
            "error": error,
            "status_reason": None,
            **_NO_LEASE,
        }
        return await self._apply(Change(job.id, job.status, values, EventKind.FAILED, owner))

    async def retry(self, job: Job, owner: str, error: JobError, delay_s: float) -> Job | None:
        reason = (
            f"attempt {job.attempt} of {job.max_attempts} failed ({error.type}: {error.message}); "
            f"retrying in {delay_s:.1f} s"
        )
        values = {
            "status": JobStatus.QUEUED,
            "attempt": job.attempt + 1,
            "scheduled_at": utcnow() + timedelta(seconds=delay_s),
            "error": error,
            "status_reason": reason,
            **_RESET_RUN,
        }
        return await self._apply(
            Change(job.id, JobStatus.RUNNING, values, EventKind.RETRYING, owner)
        )

    async def release(
        self, job: Job, owner: str | None, reason: str, *, interrupted: bool
    ) -> Job | None:
        """Return a running job to the queue without using up an attempt."""
        values = {
            "status": JobStatus.QUEUED,
            "interruptions": job.interruptions + (1 if interrupted else 0),
            "scheduled_at": utcnow(),
            "status_reason": reason,
            **_RESET_RUN,
        }
        return await self._apply(Change(job.id, JobStatus.RUNNING, values, EventKind.QUEUED, owner))

    async def mark_cancelled(self, job: Job, owner: str | None, reason: str) -> Job | None:
        values = {
            "status": JobStatus.CANCELLED,
            "finished_at": utcnow(),
            "status_reason": reason,
            **_NO_LEASE,
        }
        return await self._apply(Change(job.id, job.status, values, EventKind.CANCELLED, owner))

    async def record_estimate(self, job: Job) -> Job | None:
        """Record an ``estimate`` event with the job's current representation."""
        return await self._apply(Change(job.id, job.status, {}, EventKind.ESTIMATE))

    async def request_cancel(self, job: Job) -> Job | None:
        """Flag a running job so that the worker holding it cancels its work."""
        change = Change(job.id, JobStatus.RUNNING, {"cancel_requested": True}, None)
        return await self._apply(change)

    async def stale_running(self, now: datetime) -> list[Job]:
        """Return running jobs whose lease expired or whose owner process is gone."""
        candidates = await self._running_jobs()
        return [
            job
            for job in candidates
            if job.lease_expires_at is None
            or job.lease_expires_at < now
            or (job.lease_owner is not None and owner_is_dead(job.lease_owner))
        ]

    async def purge(self, finished_before: datetime, tombstones_before: datetime) -> int:
        """Delete finished jobs, their events and old tombstones; return how many jobs went."""
        return await self._purge(finished_before, tombstones_before)

    async def _apply(self, change: Change) -> Job | None:
        return await self._update(change)

    # Backend hooks ---------------------------------------------------------------------

    @abc.abstractmethod
    async def _insert(self, job: Job) -> tuple[Job, bool]: ...

    @abc.abstractmethod
    async def _claim(
        self, worker_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Job]: ...

    @abc.abstractmethod
    async def _renew(self, worker_id: str, lease_until: datetime) -> list[tuple[str, bool]]: ...

    @abc.abstractmethod
    async def _update(self, change: Change) -> Job | None:
        """Apply ``change`` and record its event atomically; ``None`` if the row moved on."""

    @abc.abstractmethod
    async def _running_jobs(self) -> list[Job]: ...

    @abc.abstractmethod
    async def _purge(self, finished_before: datetime, tombstones_before: datetime) -> int: ...


_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
_RESET_RUN: dict[str, Any] = {
    **_NO_LEASE,
    "started_at": None,
    "progress": 0.0,
    "progress_message": None,
    "cancel_requested": False,
}
