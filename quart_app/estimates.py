"""Completion estimates: how long a job will run, and when a queued job will get a slot.

A job's run time comes from its task when the params fix it (``sleep``), otherwise from the
median of that task's recent successful runs, corrected by the job's reported progress. A
queued job's start comes from a simulation of the queue ahead of it over the slots of every
live worker. The simulation is rebuilt after events, at most every ``_REFRESH_MIN_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .events import StreamClosedError
from .jobs import Job, JobStatus, isoformat, utcnow

if TYPE_CHECKING:
    from .config import Settings
    from .events import EventBus
    from .storage import JobStore
    from .tasks import TaskRegistry

logger = logging.getLogger(__name__)

# Run time assumed for a task with no known duration and no finished run yet.
UNKNOWN_DURATION_S = 30.0
HISTORY_SIZE = 20
# Progress below this fraction predicts the total run time too poorly to use.
MIN_USEFUL_PROGRESS = 0.05
PROGRESS_TRUSTED = 0.25
# The simulation plans this many queued jobs; later ones are placed after the last of them.
PLAN_LIMIT = 5000
# A queued job's estimate must move this much (and by ESTIMATE_SHIFT_FRACTION of the time
# left) before an ``estimate`` event announces it.
ESTIMATE_SHIFT_S = 2.0
ESTIMATE_SHIFT_FRACTION = 0.2
RETRY_AFTER_MIN_S = 1
RETRY_AFTER_MAX_S = 60
_REFRESH_MIN_S = 0.25
_REFRESH_MAX_S = 2.0
_REFRESH_COST_FACTOR = 20


@dataclass(frozen=True)
class Estimate:
    """When a job is expected to finish, and what the figure rests on."""

    seconds_to_completion: float
    completion_at: datetime
    basis: str  # "params", "history", "progress" or "default"

    @property
    def retry_after_s(self) -> int:
        """A polling interval that follows the estimate, kept between 1 s and 60 s."""
        seconds = math.ceil(self.seconds_to_completion)
        return min(max(seconds, RETRY_AFTER_MIN_S), RETRY_AFTER_MAX_S)


@dataclass
class _Plan:
    """The simulated queue: when each job starts, and when each slot frees up after that."""

    made_at: datetime
    starts_at: dict[str, datetime] = field(default_factory=dict)
    # Seconds after ``made_at`` at which each slot is free, as a heap.
    free_s: list[float] = field(default_factory=list)
    # Jobs are placed from the event loop and from the store's writer thread.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def place(self, job_id: str, duration_s: float, now: datetime) -> datetime:
        """Reserve the earliest free slot for a job submitted since the plan was made.

        Jobs submitted between two refreshes then queue behind each other, not all at the
        same free slot. The next refresh replaces these guesses with a full simulation.
        """
        with self.lock:
            planned = self.starts_at.get(job_id)
            if planned is not None:
                return planned
            if not self.free_s:
                return now
            offset_s = max(heapq.heappop(self.free_s), (now - self.made_at).total_seconds())
            heapq.heappush(self.free_s, offset_s + duration_s)
            planned = self.made_at + timedelta(seconds=offset_s)
            self.starts_at[job_id] = planned
            return planned

    def next_free_at(self, now: datetime) -> datetime:
        with self.lock:
            return self.made_at + timedelta(seconds=self.free_s[0]) if self.free_s else now


class Estimator:
    """Estimates for any job, from a queue plan kept current by the event stream."""

    def __init__(self, store: JobStore, registry: TaskRegistry, settings: Settings) -> None:
        self._store = store
        self._registry = registry
        self._settings = settings
        self._history_s: dict[str, float] = {}
        self._plan = _Plan(made_at=utcnow())
        self._announced: dict[str, datetime] = {}
        self.worker_id: str | None = None

    # Durations -------------------------------------------------------------------------

    def expected_duration_s(self, task: str, params: dict[str, Any]) -> float | None:
        """Return the run time fixed by the task's params, if the task declares one."""
        if task not in self._registry:
            return None
        definition = self._registry.get(task)
        if definition.estimate_s is None:
            return None
        try:
            return max(0.0, float(definition.estimate_s(definition.parse_params(params))))
        except Exception:
            logger.warning("failed to estimate the duration of task %s", task, exc_info=True)
            return None

    def typical_duration_s(self, task: str) -> tuple[float, str]:
        """Return the expected run time of a task with unknown params, and its basis."""
        if task in self._history_s:
            return self._history_s[task], "history"
        return UNKNOWN_DURATION_S, "default"

    def _total_s(self, job: Job) -> tuple[float, str]:
        if job.expected_duration_s is not None:
            total_s, basis = job.expected_duration_s, "params"
        else:
            total_s, basis = self.typical_duration_s(job.task)
        # A run ends at its timeout at the latest, if only by failing.
        if job.timeout_s is not None:
            total_s = min(total_s, job.timeout_s)
        return total_s, basis

    # Estimates -------------------------------------------------------------------------

    def estimate(self, job: Job, now: datetime | None = None) -> Estimate | None:
        """Return the job's estimate, or ``None`` once it has finished."""
        if job.is_terminal:
            return None
        now = now or utcnow()
        total_s, basis = self._total_s(job)
        if job.status is JobStatus.RUNNING and job.started_at is not None:
            remaining_s, basis = self._remaining_running_s(job, now, total_s, basis)
        else:
            starts_at = self._start_of(job, now)
            remaining_s = (starts_at - now).total_seconds() + total_s
        remaining_s = max(0.0, remaining_s)
        return Estimate(round(remaining_s, 3), now + timedelta(seconds=remaining_s), basis)

    def _remaining_running_s(
        self, job: Job, now: datetime, total_s: float, basis: str
    ) -> tuple[float, str]:
        assert job.started_at is not None
        elapsed_s = max(0.0, (now - job.started_at).total_seconds())
        remaining_s = total_s - elapsed_s
        if basis != "params" and job.progress >= MIN_USEFUL_PROGRESS:
            # The rate of the job's own progress predicts its end better than the history
            # of other jobs; trust it fully from PROGRESS_TRUSTED on, partly before.
            by_progress_s = elapsed_s * (1 - job.progress) / job.progress
            weight = min(1.0, job.progress / PROGRESS_TRUSTED)
            remaining_s = (1 - weight) * max(remaining_s, 0.0) + weight * by_progress_s
            basis = "progress"
        if remaining_s <= 0:
            # Overdue: keep the estimate ahead of now, further the later the job runs,
            # instead of returning zero for a job that is not done.
            remaining_s = 0.5 + 0.25 * -remaining_s
        return remaining_s, basis

    def _start_of(self, job: Job, now: datetime) -> datetime:
        planned = self._plan.starts_at.get(job.id)
        if planned is None and job.scheduled_at <= now:
            planned = self._plan.place(job.id, self._total_s(job)[0], now)
        elif planned is None:
            # NOTE: a delayed job is not placed, so it reserves no slot until a refresh.
            planned = self._plan.next_free_at(now)
        return max(planned, job.scheduled_at, now)

    def describe(self, job: Job) -> dict[str, Any]:
        """Return the job's public fields with its estimate, as the API and events show it."""
        body = job.to_dict()
        estimate = self.estimate(job)
        body["estimated_time_completion"] = isoformat(estimate.completion_at) if estimate else None
        body["seconds_to_completion"] = estimate.seconds_to_completion if estimate else 0.0
        body["estimate_basis"] = estimate.basis if estimate else None
        return body

    # Plan ------------------------------------------------------------------------------

    async def run(self, bus: EventBus) -> None:
        """Rebuild the plan after events and on a timer until cancelled."""
        with bus.subscribe() as subscription:
            while True:
                if not subscription.pending:
                    with contextlib.suppress(TimeoutError, StreamClosedError):
                        async with asyncio.timeout(_REFRESH_MAX_S):
                            await subscription.wait()
                    if subscription.closed:
                        # During shutdown the bus is closed but running jobs still finish,
                        # so the plan keeps refreshing on the timer alone.
                        await asyncio.sleep(_REFRESH_MAX_S)
                subscription.skip()
                started = time.monotonic()
                try:
                    await self.refresh()
                except Exception:
                    logger.warning("failed to refresh the queue estimate", exc_info=True)
                # A long queue makes a refresh expensive. Spacing refreshes by a multiple
                # of their cost keeps the estimator to a small share of the event loop.
                took_s = time.monotonic() - started
                # Events that arrive meanwhile are covered by the next refresh.
                await asyncio.sleep(max(_REFRESH_MIN_S, _REFRESH_COST_FACTOR * took_s))

    async def refresh(self) -> None:
        """Reload durations and live capacity, then re-simulate the queue."""
        now = utcnow()
        active = await self._store.active_jobs(PLAN_LIMIT)
        for task in {job.task for job in active} | set(self._history_s):
            durations = await self._store.recent_durations_s(task, HISTORY_SIZE)
            if durations:
                self._history_s[task] = statistics.median(durations)
        since = now - timedelta(seconds=self._settings.lease_s)
        workers = await self._store.live_workers(since)
        capacity = sum(worker.concurrency for worker in workers) or self._settings.concurrency
        self._plan = self._simulate(active, capacity, now)
        await self._announce_shifts(active, sorted(worker.id for worker in workers), now)

    async def _announce_shifts(
        self, active: list[Job], worker_ids: list[str], now: datetime
    ) -> None:
        """Record an ``estimate`` event for queued jobs whose expected completion moved.

        Every worker plans the whole queue, so each job is announced by one worker only,
        picked by a hash of its id, to keep the event log free of duplicates.
        """
        announced: dict[str, datetime] = {}
        for job in active:
            estimate = self.estimate(job, now)
            if job.status is not JobStatus.QUEUED or estimate is None:
                continue
            previous = self._announced.get(job.id)
            announced[job.id] = previous or estimate.completion_at
            if previous is None or not self._owns(job.id, worker_ids):
                continue
            shift_s = abs((estimate.completion_at - previous).total_seconds())
            threshold_s = max(
                ESTIMATE_SHIFT_S, ESTIMATE_SHIFT_FRACTION * estimate.seconds_to_completion
            )
            if shift_s >= threshold_s and await self._store.record_estimate(job) is not None:
                announced[job.id] = estimate.completion_at
        self._announced = announced

    def _owns(self, job_id: str, worker_ids: list[str]) -> bool:
        if self.worker_id is None or self.worker_id not in worker_ids:
            return len(worker_ids) <= 1
        digest = hashlib.blake2b(job_id.encode(), digest_size=4).digest()
        return worker_ids[int.from_bytes(digest, "big") % len(worker_ids)] == self.worker_id

    def _simulate(self, active: list[Job], capacity: int, now: datetime) -> _Plan:
        # Slots hold the offset (seconds from now) at which each becomes free.
        slots: list[float] = []
        waiting: list[tuple[float, int, int, Job]] = []
        for job in active:
            if job.status is JobStatus.RUNNING:
                estimate = self.estimate(job, now)
                slots.append(estimate.seconds_to_completion if estimate else 0.0)
            else:
                due_s = max(0.0, (job.scheduled_at - now).total_seconds())
                waiting.append((due_s, -job.priority, job.seq or 0, job))
        slots.extend([0.0] * max(0, capacity - len(slots)))
        heapq.heapify(slots)
        waiting.sort(key=lambda item: item[0])

        plan = _Plan(made_at=now)
        ready: list[tuple[int, int, Job]] = []
        index = 0
        while index < len(waiting) or ready:
            free_s = heapq.heappop(slots)
            if not ready:
                free_s = max(free_s, waiting[index][0])
            # Every job due by the time the slot frees competes for it, best priority first.
            while index < len(waiting) and waiting[index][0] <= free_s:
                _, priority, seq, job = waiting[index]
                heapq.heappush(ready, (priority, seq, job))
                index += 1
            _, _, job = heapq.heappop(ready)
            plan.starts_at[job.id] = now + timedelta(seconds=free_s)
            heapq.heappush(slots, free_s + self._total_s(job)[0])
        plan.free_s = slots
        return plan
