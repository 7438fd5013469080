"""Completion estimates, from a job's own duration and from the queue ahead of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from quart_app.config import Settings
from quart_app.estimates import UNKNOWN_DURATION_S, Estimate, Estimator
from quart_app.jobs import Job, JobStatus, utcnow
from quart_app.storage import from_url
from quart_app.tasks import registry

from . import helpers


def make_estimator() -> Estimator:
    return Estimator(from_url("memory://"), registry, Settings(concurrency=1))


def make_job(seq: int, **changes: Any) -> Job:
    """A queued 10-second ``sleep`` with no timeout, as the estimator sees it."""
    defaults: dict[str, Any] = {
        "params": {"seconds": 10},
        "max_attempts": 1,
        "timeout_s": None,
        "expected_duration_s": 10,
        "seq": seq,
    }
    return helpers.make_job(**{**defaults, **changes})


def test_estimate_running_sleep_counts_down() -> None:
    estimator = make_estimator()
    now = utcnow()
    job = make_job(1, status=JobStatus.RUNNING, started_at=now - timedelta(seconds=4))

    estimate = estimator.estimate(job, now)

    assert estimate is not None
    assert estimate.seconds_to_completion == 6
    assert estimate.completion_at == now + timedelta(seconds=6)
    assert estimate.basis == "params"


def test_estimate_overdue_job_moves_forward() -> None:
    estimator = make_estimator()
    now = utcnow()
    job = make_job(1, status=JobStatus.RUNNING, started_at=now - timedelta(seconds=12))

    first = estimator.estimate(job, now)
    later = estimator.estimate(job, now + timedelta(seconds=4))

    assert first is not None and later is not None
    assert first.seconds_to_completion > 0
    assert later.completion_at > first.completion_at


def test_estimate_queued_job_waits_for_free_slot() -> None:
    estimator = make_estimator()
    now = utcnow()
    running = make_job(1, status=JobStatus.RUNNING, started_at=now - timedelta(seconds=2))
    ahead = make_job(2)
    behind = make_job(3, expected_duration_s=5)
    urgent = make_job(4, priority=5, expected_duration_s=1)
    estimator._plan = estimator._simulate([running, ahead, behind, urgent], capacity=1, now=now)

    # One slot: running ends at 8 s, then urgent (1 s), ahead (10 s), behind (5 s).
    assert _seconds(estimator.estimate(urgent, now)) == 9
    assert _seconds(estimator.estimate(ahead, now)) == 19
    assert _seconds(estimator.estimate(behind, now)) == 24


def test_estimate_queues_jobs_submitted_since_refresh() -> None:
    # Jobs that arrive between two refreshes must queue behind each other, not all
    # claim the same free slot.
    estimator = make_estimator()
    now = utcnow()
    estimator._plan = estimator._simulate([], capacity=2, now=now)
    first, second, third = (make_job(seq, scheduled_at=now) for seq in (1, 2, 3))

    assert _seconds(estimator.estimate(first, now)) == 10
    assert _seconds(estimator.estimate(second, now)) == 10
    assert _seconds(estimator.estimate(third, now)) == 20
    # A job keeps its place when it is estimated again.
    assert _seconds(estimator.estimate(first, now)) == 10


def test_estimate_delayed_job_waits_for_its_time() -> None:
    estimator = make_estimator()
    now = utcnow()
    delayed = make_job(1, scheduled_at=now + timedelta(seconds=30))
    estimator._plan = estimator._simulate([delayed], capacity=2, now=now)

    assert _seconds(estimator.estimate(delayed, now)) == 40


def test_estimate_unknown_task_uses_history_then_progress() -> None:
    estimator = make_estimator()
    now = utcnow()
    job = make_job(1, task="primes", expected_duration_s=None, status=JobStatus.RUNNING)
    job = job.evolve(started_at=now - timedelta(seconds=10))

    default = estimator.estimate(job, now)
    assert default is not None and default.basis == "default"
    assert default.seconds_to_completion == UNKNOWN_DURATION_S - 10

    estimator._history_s["primes"] = 40
    history = estimator.estimate(job, now)
    assert history is not None and history.basis == "history"
    assert history.seconds_to_completion == 30

    # Half done after 10 s: the job's own rate predicts 10 s more, and it is trusted fully.
    halfway = estimator.estimate(job.evolve(progress=0.5), now)
    assert halfway is not None and halfway.basis == "progress"
    assert halfway.seconds_to_completion == 10

    # 10% done after 10 s: 90 s more by its rate, 30 s by history; weighted 0.4 and 0.6.
    early = estimator.estimate(job.evolve(progress=0.1), now)
    assert early is not None
    assert early.seconds_to_completion == pytest.approx(0.4 * 90 + 0.6 * 30)


def test_estimate_finished_job_has_none() -> None:
    assert make_estimator().estimate(make_job(1, status=JobStatus.SUCCEEDED)) is None


def test_retry_after_follows_estimate_within_bounds() -> None:
    now = utcnow()
    assert Estimate(0.2, now, "params").retry_after_s == 1
    assert Estimate(7.1, now, "params").retry_after_s == 8
    assert Estimate(3600, now, "params").retry_after_s == 60


def _seconds(estimate: Estimate | None) -> float:
    assert estimate is not None
    return round(estimate.seconds_to_completion)
