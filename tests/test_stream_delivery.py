"""Delivery inside one process: shared channels, catch-up from the log, and slow clients."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import events
from quart_app.jobs import JobStatus
from quart_app.scheduler import Scheduler, Submission
from quart_app.storage.sqlite import SQLiteStore
from quart_app.streams import EventReader, SendWatchdog, guard_sends

from .helpers import make_job, wait_for


async def finished_jobs(scheduler: Scheduler, count: int) -> list[str]:
    job_ids = []
    for _ in range(count):
        job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))
        job_ids.append(job.id)

    async def all_done() -> bool:
        jobs = [await scheduler.get(job_id) for job_id in job_ids]
        return all(job.status is JobStatus.SUCCEEDED for job in jobs)

    await wait_for(all_done)
    return job_ids


async def test_reader_catches_up_after_lag(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A channel that keeps two events overflows with the job's progress events. The
    # reader must then fall back to the store's log and see every event once, in order.
    monkeypatch.setattr(events, "JOB_EVENTS_RETAINED", 2)
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.5}))
    with scheduler.open_stream(job.id) as subscription:
        start_id = await scheduler.store.last_event_id(job_id=job.id)
        reader = EventReader(scheduler, subscription, start_id, job_id=job.id)

        async def published() -> bool:
            current = await scheduler.get(job.id)
            last_id = await scheduler.store.last_event_id()
            return current.status is JobStatus.SUCCEEDED and scheduler.feed.last_id == last_id

        await wait_for(published)
        stored = await scheduler.store.events_after(start_id, 1000, job_id=job.id)
        expected = [event.id for event in stored]
        received: list[int] = []
        while len(received) < len(expected):
            event = await asyncio.wait_for(reader.next(), 5)
            if event is not None:
                received.append(event.id)

    assert len(expected) > 2
    assert received == expected


async def test_job_channel_ignores_other_jobs(scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.3}))
    start_id = await scheduler.store.last_event_id(job_id=job.id)
    with scheduler.open_stream(job.id) as subscription:
        reader = EventReader(scheduler, subscription, start_id, job_id=job.id)
        others = await finished_jobs(scheduler, 3)
        kinds: list[str] = []
        while not kinds or kinds[-1] != "succeeded":
            event = await asyncio.wait_for(reader.next(), 5)
            if event is not None:
                assert event.job_id == job.id
                kinds.append(event.kind.value)

    assert job.id not in others
    assert "started" in kinds


async def test_open_streams_counts_only_clients(scheduler: Scheduler) -> None:
    # The estimator follows the bus too, but it is not a client stream.
    assert scheduler.open_streams == 0
    with scheduler.open_stream(), scheduler.open_stream("a" * 32):
        assert scheduler.open_streams == 2
    assert scheduler.open_streams == 0


async def test_watchdog_cancels_stuck_send() -> None:
    never = asyncio.Event()

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield b"first"
        yield b"second"

    async def consume() -> None:
        # Stands in for a server whose client stopped reading during the second send.
        watchdog_chunks = guard_sends(chunks(), watchdog)
        async for chunk in watchdog_chunks:
            if chunk == b"second":
                await never.wait()

    watchdog = SendWatchdog(timeout_s=0.05)
    sweeper = asyncio.create_task(watchdog.run())
    consumer = asyncio.create_task(consume())
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(consumer, 5)
    finally:
        sweeper.cancel()
    assert consumer.cancelled()


async def test_watchdog_leaves_finished_sends() -> None:
    watchdog = SendWatchdog(timeout_s=0.0)
    task = asyncio.create_task(asyncio.sleep(10))
    watchdog.sending(task)
    watchdog.sent(task)

    watchdog.sweep()

    assert not task.cancelled()
    task.cancel()


async def test_quart_route_streams_like_fast_path(app: Quart, client: Client) -> None:
    # The fast path serves streams in front of Quart; the route behind it must agree.
    submitted = await client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 0}})
    job_id = (await submitted.get_json())["id"]

    async def done() -> bool:
        response = await client.get(f"/api/jobs/{job_id}")
        body = await response.get_json()
        return bool(body["status"] == "succeeded")

    await wait_for(done)
    fast = await client.get(f"/api/jobs/{job_id}/events")
    app.asgi_app = app.asgi_app.app.app  # type: ignore[attr-defined, method-assign]
    slow = await client.get(f"/api/jobs/{job_id}/events")

    fast_body = await fast.get_data(as_text=True)
    slow_body = await slow.get_data(as_text=True)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["Content-Type"] == slow.headers["Content-Type"]
    fast_data = json.loads(fast_body.split("data: ", 1)[1].split("\n", 1)[0])
    slow_data = json.loads(slow_body.split("data: ", 1)[1].split("\n", 1)[0])
    assert fast_data == slow_data
    assert fast_data["status"] == "succeeded"
    last_id = slow_body.split("id: ", 1)[1].split("\n", 1)[0]

    resumed = await client.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": last_id})

    assert resumed.status_code == 204


def stored_event(event_id: int) -> events.Event:
    job = make_job()
    return events.Event(event_id, job.id, events.EventKind.QUEUED, job.created_at, job.to_dict())


async def test_feed_publishes_offered_events_without_read() -> None:
    log = [stored_event(event_id) for event_id in range(1, 7)]
    reads: list[int] = []

    async def read_after(after_id: int, limit: int) -> list[events.Event]:
        reads.append(after_id)
        return [event for event in log if event.id > after_id][:limit]

    bus = events.EventBus()
    feed = events.EventFeed(read_after, bus, poll_interval_s=60)
    with bus.subscribe() as subscription:
        runner = asyncio.create_task(feed.run(0))
        await asyncio.sleep(0)  # let the feed start; its first poll is 60 s away
        feed.offer(log[0:2])
        offered_reads = list(reads)
        # Events 3 and 4 came from another process, so the feed must read them first.
        feed.offer(log[4:6])

        async def published_all() -> bool:
            return feed.last_id == 6

        await wait_for(published_all)
        runner.cancel()
        received = [event.id for event in subscription.take()]

    assert offered_reads == []
    assert reads == [2]
    assert received == [1, 2, 3, 4, 5, 6]


async def test_rolled_back_write_publishes_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "jobs.db"))
    handed_over: list[events.Event] = []
    store.on_events = handed_over.extend
    await store.open()
    try:
        job, _ = await store.enqueue(make_job())
        committed = list(handed_over)

        def record_then_fail(db: sqlite3.Connection) -> None:
            store._record(db, job, events.EventKind.PROGRESS)
            raise RuntimeError("the write failed after recording its event")

        with pytest.raises(RuntimeError):
            await store._write(record_then_fail)
        stored = await store.events_after(0, 100)
    finally:
        await store.close()

    assert [event.kind for event in committed] == [events.EventKind.QUEUED]
    assert handed_over == committed
    assert [event.id for event in stored] == [event.id for event in committed]


async def test_status_channel_wakes_only_for_its_status() -> None:
    bus = events.EventBus()
    queued = stored_event(1)
    succeeded = events.Event(
        2,
        queued.job_id,
        events.EventKind.SUCCEEDED,
        queued.at,
        {**queued.data, "status": "succeeded"},
    )

    with bus.subscribe(status="succeeded") as finished, bus.subscribe() as everything:
        bus.publish(queued)
        woken_by_queued = finished.pending
        bus.publish(succeeded)

        assert not woken_by_queued
        assert finished.take() == [succeeded]
        assert everything.take() == [queued, succeeded]


async def test_background_tasks_survive_closed_bus(scheduler: Scheduler) -> None:
    # Shutdown closes the bus while running jobs finish; the estimator must keep going.
    scheduler.begin_shutdown()
    for _ in range(5):
        await asyncio.sleep(0)  # let every woken task take its next step

    finished = [task for task in scheduler._background if task.done()]

    assert finished == []


def test_job_data_prints_floats_like_stored_rows() -> None:
    # Events carry the in-memory job, and GET carries the row read back from SQLite,
    # where these columns are REAL; both must print the same JSON.
    data = make_job(progress=1, timeout_s=3600).to_dict()

    assert json.dumps(data["progress"]) == "1.0"
    assert json.dumps(data["timeout"]) == "3600.0"
