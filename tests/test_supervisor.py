"""The supervisor in a running app: order, limits, timeouts, retries, cancellation, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from quart_app import Settings, create_app
from quart_app.events import Event, EventKind
from quart_app.jobs import Job, JobStatus, utcnow
from quart_app.scheduler import Scheduler, Submission
from quart_app.supervisor import LEASE_EXPIRED_REASON, RESTART_REASON, SHUTDOWN_REASON

from . import tasks_for_tests
from .helpers import make_job, max_overlap, serving, wait_for


async def wait_status(scheduler: Scheduler, job_id: str, *statuses: JobStatus) -> Job:
    async def reached() -> Job | None:
        job = await scheduler.get(job_id)
        return job if job.status in statuses else None

    return await wait_for(reached)


async def event_kinds(scheduler: Scheduler, job_id: str) -> list[EventKind]:
    events = await scheduler.store.events_after(0, 1000, job_id=job_id)
    return [event.kind for event in events]


async def test_supervisor_runs_higher_priority_first(
    make_settings: Callable[..., Settings],
) -> None:
    tasks_for_tests.RECORDED.clear()
    app = create_app(make_settings(concurrency=1))
    async with serving(app):
        scheduler: Scheduler = app.extensions["scheduler"]
        blocker, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.3}))
        await wait_status(scheduler, blocker.id, JobStatus.RUNNING)
        low, _ = await scheduler.submit(Submission("test.record", {"label": "low"}, priority=-1))
        first, _ = await scheduler.submit(Submission("test.record", {"label": "first"}))
        second, _ = await scheduler.submit(Submission("test.record", {"label": "second"}))
        high, _ = await scheduler.submit(Submission("test.record", {"label": "high"}, priority=5))
        await wait_status(scheduler, low.id, JobStatus.SUCCEEDED)

    assert tasks_for_tests.RECORDED == ["high", "first", "second", "low"]


async def test_supervisor_respects_concurrency_limit(scheduler: Scheduler) -> None:
    ids = [(await scheduler.submit(Submission("sleep", {"seconds": 0.15})))[0].id for _ in range(5)]
    jobs = [await wait_status(scheduler, job_id, JobStatus.SUCCEEDED) for job_id in ids]

    assert max_overlap(jobs) == 2


async def test_supervisor_runs_delayed_job_when_due(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}, delay_s=0.3))

    assert (await scheduler.get(job.id)).status is JobStatus.QUEUED
    done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)
    assert done.started_at is not None
    assert done.started_at >= job.scheduled_at


async def test_supervisor_retries_failures_until_success(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.flaky", {"failures": 2}, max_attempts=3))

    done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    assert done.attempt == 3
    assert done.result == {"attempt": 3}
    kinds = await event_kinds(scheduler, job.id)
    assert kinds.count(EventKind.RETRYING) == 2
    assert kinds[-1] is EventKind.SUCCEEDED


async def test_supervisor_fails_after_max_attempts(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.flaky", {"failures": 5}, max_attempts=2))

    failed = await wait_status(scheduler, job.id, JobStatus.FAILED)

    assert failed.attempt == 2
    assert failed.error is not None
    assert failed.error.type == "RuntimeError"
    assert failed.error.message == "planned failure on attempt 2"


async def test_supervisor_retry_reason_names_error(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.flaky", {"failures": 1}, max_attempts=2))
    await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    events = await scheduler.store.events_after(0, 100, job_id=job.id)
    retrying = [event for event in events if event.kind is EventKind.RETRYING]
    assert (
        "attempt 1 of 2 failed (RuntimeError: planned failure on attempt 1)"
        in (retrying[0].data["status_reason"])
    )


async def test_supervisor_times_out_long_job(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(
        Submission("test.hang", {"seconds": 10}, timeout_s=0.1, max_attempts=2)
    )

    failed = await wait_status(scheduler, job.id, JobStatus.FAILED)

    assert failed.attempt == 2
    assert failed.error is not None
    assert failed.error.type == "TimeoutError"
    assert "timeout of 0.1 s" in failed.error.message


async def test_supervisor_cancels_thread_task(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.blocking", {"seconds": 30}))
    await wait_status(scheduler, job.id, JobStatus.RUNNING)

    await scheduler.cancel(job.id)

    cancelled = await wait_status(scheduler, job.id, JobStatus.CANCELLED)
    assert cancelled.attempt == 1


async def test_supervisor_holds_slot_until_thread_returns(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(concurrency=1))
    async with serving(app):
        scheduler: Scheduler = app.extensions["scheduler"]
        stubborn, _ = await scheduler.submit(Submission("test.stubborn", {"seconds": 1.0}))
        await wait_status(scheduler, stubborn.id, JobStatus.RUNNING)
        await scheduler.cancel(stubborn.id)
        cancelled = await wait_status(scheduler, stubborn.id, JobStatus.CANCELLED)
        quick, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))
        done = await wait_status(scheduler, quick.id, JobStatus.SUCCEEDED)

    # The job is cancelled at once, but its thread runs on for 1 s and keeps the only slot.
    assert cancelled.started_at is not None and cancelled.finished_at is not None
    assert (cancelled.finished_at - cancelled.started_at).total_seconds() < 1.0
    assert done.started_at is not None
    assert (done.started_at - cancelled.started_at).total_seconds() >= 1.0


async def test_supervisor_process_task_reports_progress(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.spin", {"seconds": 1.0}))

    async def progressed() -> Job | None:
        current = await scheduler.get(job.id)
        return current if 0 < current.progress < 1 else None

    running = await wait_for(progressed, timeout_s=20)
    assert running.progress_message is not None
    assert running.progress_message.startswith("round ")
    done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)
    assert done.result > 0
    assert done.progress == 1.0
    assert done.progress_message is None


async def test_supervisor_cancels_process_task(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.spin", {"seconds": 60}))

    async def progressed() -> bool:
        return (await scheduler.get(job.id)).progress > 0

    await wait_for(progressed, timeout_s=20)
    await scheduler.cancel(job.id)

    await wait_status(scheduler, job.id, JobStatus.CANCELLED)


async def test_supervisor_primes_counts_in_process(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("primes", {"below": 1_000_000}))

    done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    assert done.result == {"below": 1_000_000, "count": 78498}


async def test_supervisor_fails_unserialisable_result(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("test.unserialisable", {}, max_attempts=3))

    failed = await wait_status(scheduler, job.id, JobStatus.FAILED)

    assert failed.attempt == 1
    assert failed.error is not None
    assert "not JSON" in failed.error.message


async def test_supervisor_records_lifecycle_events_in_order(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.3}))
    await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    events = await scheduler.store.events_after(0, 100, job_id=job.id)

    kinds = [event.kind for event in events]
    assert kinds[:2] == [EventKind.QUEUED, EventKind.STARTED]
    assert EventKind.PROGRESS in kinds
    assert kinds[-1] is EventKind.SUCCEEDED
    ids = [event.id for event in events]
    assert ids == sorted(ids)
    assert events[-1].data["status"] == "succeeded"


async def test_estimate_event_when_queue_ahead_shrinks(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(concurrency=1))
    async with serving(app):
        scheduler: Scheduler = app.extensions["scheduler"]
        running, _ = await scheduler.submit(Submission("sleep", {"seconds": 5}))
        await wait_status(scheduler, running.id, JobStatus.RUNNING)
        ahead, _ = await scheduler.submit(Submission("sleep", {"seconds": 5}))
        behind, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}))
        await scheduler.estimator.refresh()
        before = scheduler.estimate(await scheduler.get(behind.id))

        await scheduler.cancel(ahead.id)

        async def estimate_event() -> list[Event] | None:
            events = await scheduler.store.events_after(0, 100, job_id=behind.id)
            found = [event for event in events if event.kind is EventKind.ESTIMATE]
            return found or None

        events = await wait_for(estimate_event)

    assert before is not None
    assert events[0].data["status"] == "queued"
    assert events[0].data["seconds_to_completion"] < before.seconds_to_completion - 3


async def test_supervisor_publishes_events_on_bus(scheduler: Scheduler) -> None:
    with scheduler.bus.subscribe() as subscription:
        job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))
        seen: list[EventKind] = []
        while EventKind.SUCCEEDED not in seen:
            await asyncio.wait_for(subscription.wait(), 5)
            seen.extend(event.kind for event in subscription.take() if event.job_id == job.id)

    assert seen[0] is EventKind.QUEUED
    assert EventKind.STARTED in seen


async def test_supervisor_logs_job_lifecycle(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="quart_app")
    job, _ = await scheduler.submit(Submission("test.flaky", {"failures": 1}, max_attempts=2))
    await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    messages = [record.getMessage() for record in caplog.records]
    assert any(
        message.startswith(f"enqueued job {job.id} (task test.flaky") for message in messages
    )
    assert any(
        message.startswith(f"started job {job.id} (task test.flaky, attempt 1")
        for message in messages
    )
    assert any(message.startswith(f"retrying job {job.id} (attempt 1") for message in messages)
    assert any(
        message.startswith(f"finished job {job.id} (task test.flaky") for message in messages
    )


async def test_shutdown_requeues_unfinished_job(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(shutdown_grace_s=0.1)
    app = create_app(settings)
    async with serving(app):
        scheduler: Scheduler = app.extensions["scheduler"]
        job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.5}))
        await wait_status(scheduler, job.id, JobStatus.RUNNING)

    app = create_app(settings)
    async with serving(app):
        scheduler = app.extensions["scheduler"]
        events = await scheduler.store.events_after(0, 100, job_id=job.id)
        requeued = [event for event in events if event.kind is EventKind.QUEUED][-1]
        assert requeued.data["status_reason"] == SHUTDOWN_REASON
        done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    assert done.interruptions == 0
    assert done.attempt == 1


async def test_shutdown_lets_short_job_finish(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(shutdown_grace_s=5))
    async with serving(app):
        scheduler: Scheduler = app.extensions["scheduler"]
        job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.3}))
        await wait_status(scheduler, job.id, JobStatus.RUNNING)

    app = create_app(make_settings())
    async with serving(app):
        scheduler = app.extensions["scheduler"]
        assert (await scheduler.get(job.id)).status is JobStatus.SUCCEEDED


async def insert_running(
    scheduler: Scheduler, owner: str, *, interruptions: int, lease_s: float
) -> Job:
    """Store a job as if a worker had claimed it, then vanished."""
    now = utcnow()
    job = make_job(
        params={"seconds": 0.05},
        scheduled_at=now + timedelta(days=1),
        expected_duration_s=0.05,
        interruptions=interruptions,
    )
    stored, _ = await scheduler.store.enqueue(job)
    values = {
        "status": JobStatus.RUNNING,
        "started_at": now,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_s),
    }
    from quart_app.storage.base import Change

    updated = await scheduler.store._update(Change(stored.id, JobStatus.QUEUED, values, None))
    assert updated is not None
    return updated


async def test_recovery_requeues_job_of_dead_process(scheduler: Scheduler) -> None:
    import socket

    owner = f"{socket.gethostname()}:999999999:dead"
    job = await insert_running(scheduler, owner, interruptions=0, lease_s=3600)

    await scheduler.supervisor.recover()

    done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)
    assert done.interruptions == 1
    assert done.attempt == 1
    events = await scheduler.store.events_after(0, 100, job_id=job.id)
    assert RESTART_REASON in [event.data["status_reason"] for event in events]


async def test_recovery_waits_for_lease_of_other_host(scheduler: Scheduler) -> None:
    job = await insert_running(scheduler, "elsewhere:1:x", interruptions=0, lease_s=0.3)

    await scheduler.supervisor.recover()
    assert (await scheduler.get(job.id)).status is JobStatus.RUNNING

    async def reclaimed() -> bool:
        await scheduler.supervisor.recover()
        return (await scheduler.get(job.id)).status is not JobStatus.RUNNING

    await wait_for(reclaimed)
    done = await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)
    events = await scheduler.store.events_after(0, 100, job_id=job.id)
    assert LEASE_EXPIRED_REASON in [event.data["status_reason"] for event in events]
    assert done.interruptions == 1


async def test_recovery_fails_job_interrupted_too_often(scheduler: Scheduler) -> None:
    job = await insert_running(scheduler, "elsewhere:1:x", interruptions=3, lease_s=-1)

    await scheduler.supervisor.recover()

    failed = await scheduler.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "InterruptedError"
    assert "SCHEDULER_MAX_INTERRUPTIONS=3" in failed.error.message
