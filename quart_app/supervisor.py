"""The supervisor: claims due jobs, runs them within limits, and records how each one ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from .jobs import Job, JobError, utcnow
from .storage.base import owner_is_dead, worker_identity
from .tasks import TaskCancelledError, TaskRunner

if TYPE_CHECKING:
    from .config import Settings
    from .storage import JobStore
    from .tasks import TaskRegistry

logger = logging.getLogger(__name__)

CANCELLED_ON_REQUEST = "cancelled on request"
RESTART_REASON = "interrupted by a restart; running again"
LEASE_EXPIRED_REASON = "its worker stopped renewing the lease; running again"
SHUTDOWN_REASON = "interrupted by a shutdown; will run again"


@dataclass
class _RunningJob:
    job: Job
    work: asyncio.Task[Any] | None = None
    cancel_reason: str | None = None


class Supervisor:
    """Runs up to ``settings.concurrency`` jobs at once in this process.

    Several supervisors, one per worker process, may share one store. The store's atomic
    claim gives each job to exactly one of them. Each renews the leases of the jobs it
    runs, so the others reclaim a job only after its process is gone.
    """

    def __init__(self, store: JobStore, registry: TaskRegistry, settings: Settings) -> None:
        self.worker_id = worker_identity()
        self._store = store
        self._registry = registry
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._wakeup = asyncio.Event()
        self._running: dict[str, _RunningJob] = {}
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._loops: set[asyncio.Task[None]] = set()
        self._claim_loop: asyncio.Task[None] | None = None
        self._progress: dict[str, tuple[float, str | None]] = {}
        self._runner = TaskRunner(self._on_progress, max_processes=settings.concurrency)

    @property
    def running_count(self) -> int:
        return len(self._running)

    # Lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._store.heartbeat(self.worker_id, self._settings.concurrency)
        await self.recover()
        self._claim_loop = self._spawn(self._claim_forever(), "claim")
        self._spawn(self._renew_forever(), "renew")
        self._spawn(self._flush_progress_forever(), "progress")
        self._spawn(self._purge_forever(), "purge")
        logger.info(
            "started supervisor %s (concurrency %d)", self.worker_id, self._settings.concurrency
        )

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within the grace period, requeue the rest."""
        if self._claim_loop is not None:
            self._claim_loop.cancel()
            await asyncio.gather(self._claim_loop, return_exceptions=True)

        if self._job_tasks:
            logger.info(
                "waiting up to %.1f s for %d running jobs",
                self._settings.shutdown_grace_s,
                len(self._job_tasks),
            )
            _, pending = await asyncio.wait(
                self._job_tasks, timeout=self._settings.shutdown_grace_s
            )
            if pending:
                logger.warning("shutdown grace period over; requeueing %d jobs", len(pending))
                for running in self._running.values():
                    running.cancel_reason = running.cancel_reason or SHUTDOWN_REASON
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await asyncio.to_thread(self._runner.close)
        with contextlib.suppress(Exception):
            await self._store.remove_worker(self.worker_id)
        logger.info("stopped supervisor %s", self.worker_id)

    def wake(self) -> None:
        """Look for due jobs now instead of at the next poll."""
        self._wakeup.set()

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=f"supervisor-{name}")
        self._loops.add(task)
        task.add_done_callback(self._loops.discard)
        return task

    # Claiming --------------------------------------------------------------------------

    async def _claim_forever(self) -> None:
        while True:
            # Wait for one free slot, then take every other free one, so that one claim
            # (one transaction) can fill them all.
            await self._slots.acquire()
            free = 1
            while not self._slots.locked():
                await self._slots.acquire()
                free += 1
            self._wakeup.clear()
            try:
                jobs = await self._store.claim(self.worker_id, self._settings.lease_s, free)
            except Exception:
                logger.warning("failed to claim jobs; retrying", exc_info=True)
                jobs = []
            for _ in range(free - len(jobs)):
                self._slots.release()
            for job in jobs:
                self._start(job)
            if not jobs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._settings.poll_interval_s)

    def _start(self, job: Job) -> None:
        self._running[job.id] = _RunningJob(job)
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._job_tasks.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._job_tasks.discard(task)
        self._slots.release()

    # Running ---------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        running = self._running[job.id]
        try:
            task = self._registry.get(job.task)
            params = task.parse_params(job.params)
        except Exception as error:
            # The job was valid when submitted; its task or params model changed since.
            await self._record_failure(job, error, retry=False)
            self._running.pop(job.id, None)
            return

        waited_s = ((job.started_at or utcnow()) - job.scheduled_at).total_seconds()
        logger.info(
            "started job %s (task %s, attempt %d, waited_s %.3f)",
            job.id,
            job.task,
            job.attempt,
            max(0.0, waited_s),
        )
        running.work = asyncio.create_task(self._runner.run(task, job.id, job.attempt, params))
        # A timed-out or abandoned work task may end after no coroutine awaits it any more.
        running.work.add_done_callback(_retrieve_exception)
        try:
            done, _ = await asyncio.wait({running.work}, timeout=job.timeout_s)
        except asyncio.CancelledError:
            await self._abandon(running)
            raise
        finally:
            self._progress.pop(job.id, None)
        try:
            await self._record_outcome(running, timed_out=not done)
        finally:
            self._running.pop(job.id, None)
        # A thread or process call that ignored cancellation keeps its slot until it returns,
        # so the concurrency limit counts the work that really runs.
        await self._runner.wait_returned(job.id)

    async def _abandon(self, running: _RunningJob) -> None:
        """Stop the work of a job this process gives up on, and return it to the queue."""
        job = running.job
        self._runner.request_cancel(job.id)
        if running.work is not None:
            running.work.cancel()
        reason = running.cancel_reason or SHUTDOWN_REASON
        self._running.pop(job.id, None)
        if reason == CANCELLED_ON_REQUEST:
            await self._store.mark_cancelled(job, self.worker_id, reason)
            logger.info("aborted job %s (reason %s)", job.id, reason)
            return
        released = await self._store.release(job, self.worker_id, reason, interrupted=False)
        if released is not None:
            logger.info("requeued job %s (reason %s)", job.id, reason)

    async def _record_outcome(self, running: _RunningJob, *, timed_out: bool) -> None:
        job, work = running.job, running.work
        assert work is not None
        if timed_out:
            self._runner.request_cancel(job.id)
            work.cancel()
            message = f"the job ran longer than its timeout of {job.timeout_s:g} s"
            await self._record_failure(job, TimeoutError(message), retry=True)
            return
        if work.cancelled() or isinstance(work.exception(), TaskCancelledError):
            reason = running.cancel_reason or CANCELLED_ON_REQUEST
            if reason == CANCELLED_ON_REQUEST:
                await self._store.mark_cancelled(job, self.worker_id, reason)
                logger.info("aborted job %s (reason %s)", job.id, reason)
            return
        error = work.exception()
        if error is not None:
            await self._record_failure(job, error, retry=True)
            return
        try:
            result = _jsonable(work.result())
        except (TypeError, ValueError) as serialise_error:
            message = f"task {job.task!r} returned a value that is not JSON: {serialise_error}"
            await self._record_failure(job, TypeError(message), retry=False)
            return
        finished = await self._store.succeed(job, self.worker_id, result)
        if finished is not None:
            elapsed_s = (
                (finished.finished_at - finished.started_at).total_seconds()
                if (finished.finished_at and finished.started_at)
                else 0.0
            )
            logger.info("finished job %s (task %s, elapsed_s %.3f)", job.id, job.task, elapsed_s)

    async def _record_failure(self, job: Job, error: BaseException, *, retry: bool) -> None:
        job_error = JobError(type(error).__name__, str(error) or type(error).__name__)
        if retry and job.attempt < job.max_attempts:
            delay_s = self._retry_delay_s(job.attempt)
            if await self._store.retry(job, self.worker_id, job_error, delay_s) is not None:
                logger.info(
                    "retrying job %s (attempt %d, delay_s %.1f) after %s: %s",
                    job.id,
                    job.attempt,
                    delay_s,
                    job_error.type,
                    job_error.message,
                )
                asyncio.get_running_loop().call_later(delay_s, self.wake)
            return
        logger.error(
            "failed job %s (task %s, attempt %d): %s",
            job.id,
            job.task,
            job.attempt,
            job_error.type,
            exc_info=error,
        )
        await self._store.fail(job, self.worker_id, job_error)

    def _retry_delay_s(self, attempt: int) -> float:
        base_s = self._settings.retry_base_delay_s * 2 ** (attempt - 1)
        # Jitter spreads retries of jobs that failed together, such as after an outage.
        jittered_s: float = base_s * random.uniform(0.8, 1.2)
        return min(self._settings.retry_max_delay_s, jittered_s)

    # Cancellation ----------------------------------------------------------------------

    def cancel_local(self, job_id: str, reason: str = CANCELLED_ON_REQUEST) -> bool:
        """Cancel the work of a job running in this process; ``False`` if it runs elsewhere."""
        running = self._running.get(job_id)
        if running is None or running.work is None:
            return False
        running.cancel_reason = reason
        self._runner.request_cancel(job_id)
        running.work.cancel()
        return True

    # Leases and recovery ---------------------------------------------------------------

    async def _renew_forever(self) -> None:
        recover_every = max(1, round(self._settings.lease_s / 2 / self._settings.renew_interval_s))
        rounds = 0
        while True:
            await asyncio.sleep(self._settings.renew_interval_s)
            rounds += 1
            try:
                await self._renew_once()
                if rounds % recover_every == 0:
                    await self.recover()
            except Exception:
                logger.warning("failed to renew leases; retrying", exc_info=True)

    async def _renew_once(self) -> None:
        await self._store.heartbeat(self.worker_id, self._settings.concurrency)
        held = dict(await self._store.renew(self.worker_id, self._settings.lease_s))
        for job_id, running in list(self._running.items()):
            if running.work is None:
                continue
            if job_id not in held:
                # Another worker reclaimed the job (this process stalled past its lease),
                # so this copy must stop; the other one's outcome is the one recorded.
                logger.warning("lost the lease of job %s; stopping this copy", job_id)
                self.cancel_local(job_id, reason="lease lost")
            elif held[job_id] and running.cancel_reason is None:
                self.cancel_local(job_id)

    async def recover(self) -> None:
        """Requeue running jobs whose worker is gone, or fail those interrupted too often."""
        for job in await self._store.stale_running(utcnow()):
            if job.id in self._running:
                continue
            owner_gone = job.lease_owner is not None and owner_is_dead(job.lease_owner)
            reason = RESTART_REASON if owner_gone else LEASE_EXPIRED_REASON
            if job.interruptions + 1 > self._settings.max_interruptions:
                error = JobError(
                    "InterruptedError",
                    f"the job's worker stopped while running it {job.interruptions + 1} times "
                    f"(limit SCHEDULER_MAX_INTERRUPTIONS={self._settings.max_interruptions}); "
                    "the task may be crashing its process",
                )
                if await self._store.fail(job, job.lease_owner, error) is not None:
                    logger.error("failed job %s (task %s): %s", job.id, job.task, error.message)
                continue
            if await self._store.release(job, job.lease_owner, reason, interrupted=True):
                logger.warning("reclaimed stuck job %s (task %s): %s", job.id, job.task, reason)
                self.wake()

    # Progress and retention ------------------------------------------------------------

    def _on_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        # May run in a worker thread; a dict assignment is atomic, and the flush loop
        # writes only the latest report of each job.
        self._progress[job_id] = (fraction, message)

    async def _flush_progress_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.progress_interval_s)
            pending, self._progress = self._progress, {}
            for job_id, (fraction, message) in pending.items():
                running = self._running.get(job_id)
                if running is None:
                    continue
                try:
                    await self._store.record_progress(
                        running.job, self.worker_id, fraction, message
                    )
                except Exception:
                    logger.warning("failed to record progress of job %s", job_id, exc_info=True)

    async def _purge_forever(self) -> None:
        interval_s = min(self._settings.retention_s / 10, 3600.0)
        while True:
            try:
                now = utcnow()
                cutoff = now - timedelta(seconds=self._settings.retention_s)
                purged = await self._store.purge(cutoff, cutoff)
                if purged:
                    logger.info("purged %d finished jobs older than %s", purged, cutoff)
            except Exception:
                logger.warning("failed to purge old jobs; retrying later", exc_info=True)
            await asyncio.sleep(interval_s)


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    value = to_jsonable_python(value)
    json.dumps(value)
    return value
