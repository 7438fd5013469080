"""The SQLite store: atomic claims across connections, leases, events and retention."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from quart_app.errors import ConfigError
from quart_app.events import EventKind
from quart_app.jobs import Job, JobError, JobStatus, utcnow
from quart_app.storage import JobStore, from_url
from quart_app.storage.sqlite import SQLiteStore

from .helpers import make_job, wait_for

OpenStore = Callable[[], Awaitable[JobStore]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Open stores on one database file, as separate worker processes would."""
    stores: list[JobStore] = []

    async def factory() -> JobStore:
        store = from_url(f"sqlite:///{tmp_path / 'store.db'}")
        await store.open()
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.close()


async def claim_one(store: JobStore, worker_id: str, lease_s: float) -> Job | None:
    jobs = await store.claim(worker_id, lease_s)
    return jobs[0] if jobs else None


def new_job(**changes: object) -> Job:
    return make_job(**changes)


async def test_store_claims_each_job_once_across_connections(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    ids = {(await first.enqueue(new_job()))[0].id for _ in range(40)}

    async def drain(store: JobStore, worker: str) -> list[str]:
        claimed = []
        while (job := await claim_one(store, worker, 30)) is not None:
            claimed.append(job.id)
        return claimed

    results = await asyncio.gather(
        drain(first, "a"), drain(second, "b"), drain(first, "c"), drain(second, "d")
    )

    claimed = [job_id for result in results for job_id in result]
    assert sorted(claimed) == sorted(ids)


async def test_store_claims_several_jobs_in_one_call(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    ids = [(await first.enqueue(new_job()))[0].id for _ in range(30)]

    batches = await asyncio.gather(
        *(store.claim(worker, 30, limit=4) for store, worker in [(first, "a"), (second, "b")] * 5)
    )

    claimed = [job.id for batch in batches for job in batch]
    assert sorted(claimed) == sorted(ids)
    assert all(len(batch) <= 4 for batch in batches)
    # Two connections race, so which batch gets which jobs varies, but each batch is
    # taken in submission order.
    for batch in batches:
        positions = [ids.index(job.id) for job in batch]
        assert positions == sorted(positions)


async def test_store_claims_by_priority_then_fifo(open_store: OpenStore) -> None:
    store = await open_store()
    low = (await store.enqueue(new_job(priority=-1)))[0]
    first = (await store.enqueue(new_job()))[0]
    high = (await store.enqueue(new_job(priority=9)))[0]
    second = (await store.enqueue(new_job()))[0]
    later = (await store.enqueue(new_job(priority=99, scheduled_at=utcnow() + timedelta(hours=1))))[
        0
    ]

    order = [(await claim_one(store, "w", 30)) for _ in range(5)]

    assert [job.id if job else None for job in order] == [
        high.id,
        first.id,
        second.id,
        low.id,
        None,
    ]
    assert (await store.job(later.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_store_job_is_visible_to_other_connection(open_store: OpenStore) -> None:
    writer, reader = await open_store(), await open_store()

    job, _ = await writer.enqueue(new_job())

    assert await reader.job(job.id) == job


async def test_store_finish_requires_lease_owner(open_store: OpenStore) -> None:
    store = await open_store()
    await store.enqueue(new_job())
    job = await claim_one(store, "owner", 30)
    assert job is not None

    assert await store.succeed(job, "intruder", {"x": 1}) is None
    finished = await store.succeed(job, "owner", {"x": 1})

    assert finished is not None
    assert finished.status is JobStatus.SUCCEEDED
    assert finished.result == {"x": 1}
    assert finished.lease_owner is None


async def test_store_renew_reports_cancel_requests(open_store: OpenStore) -> None:
    store = await open_store()
    await store.enqueue(new_job())
    job = await claim_one(store, "owner", 1)
    assert job is not None
    await store.request_cancel(job)

    held = await store.renew("owner", 30)

    assert held == [(job.id, True)]
    renewed = await store.job(job.id)
    assert renewed is not None and renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > utcnow() + timedelta(seconds=20)


async def test_store_events_are_ordered_per_job(open_store: OpenStore) -> None:
    store = await open_store()
    job, _ = await store.enqueue(new_job())
    claimed = await claim_one(store, "w", 30)
    assert claimed is not None
    await store.record_progress(claimed, "w", 0.5, "half")
    await store.fail(claimed, "w", JobError("ValueError", "bad"))

    events = await store.events_after(0, 100, job_id=job.id)

    assert [event.kind for event in events] == [
        EventKind.QUEUED,
        EventKind.STARTED,
        EventKind.PROGRESS,
        EventKind.FAILED,
    ]
    assert events[2].data["progress"] == 0.5
    assert events[3].data["error"] == {"type": "ValueError", "message": "bad"}
    assert await store.last_event_id() == events[-1].id


async def test_store_purge_removes_only_old_finished_jobs(open_store: OpenStore) -> None:
    store = await open_store()
    old, _ = await store.enqueue(new_job())
    active, _ = await store.enqueue(new_job(scheduled_at=utcnow() + timedelta(hours=1)))
    claimed = await claim_one(store, "w", 30)
    assert claimed is not None and claimed.id == old.id
    await store.succeed(claimed, "w", None)

    purged = await store.purge(utcnow() + timedelta(seconds=1), utcnow() - timedelta(days=1))

    assert purged == 1
    assert await store.job(old.id) is None
    assert await store.is_purged(old.id)
    assert await store.events_after(0, 100, job_id=old.id) == []
    assert await store.job(active.id) is not None


async def test_store_counts_by_status(open_store: OpenStore) -> None:
    store = await open_store()
    await store.enqueue(new_job())
    await store.enqueue(new_job())
    await claim_one(store, "w", 30)

    assert await store.counts() == {
        "queued": 1,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }


async def test_memory_store_works_in_one_process() -> None:
    store = from_url("memory://")
    await store.open()
    try:
        job, _ = await store.enqueue(new_job())
        assert await claim_one(store, "w", 30) == job.evolve(
            status=JobStatus.RUNNING,
            started_at=(await store.job(job.id)).started_at,  # type: ignore[union-attr]
            lease_owner="w",
            lease_expires_at=(await store.job(job.id)).lease_expires_at,  # type: ignore[union-attr]
        )
    finally:
        await store.close()
    assert isinstance(store, SQLiteStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("redis://localhost", "unsupported scheme 'redis'"),
        ("jobs.db", "unsupported scheme ''"),
    ],
)
def test_from_url_rejects_bad_url(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_url(url)


async def test_store_cancelled_write_leaves_database_usable(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(store.enqueue(new_job()))
    await asyncio.sleep(0)  # one loop turn: the task queues its write

    async def write_taken() -> bool:
        assert isinstance(store, SQLiteStore)
        return store._pending.empty()

    # The writer has taken the write and waits for the lock held by the other connection.
    await wait_for(write_taken)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    blocker.execute("ROLLBACK")
    blocker.close()

    job, created = await asyncio.wait_for(store.enqueue(new_job()), 10)

    assert created
    assert await store.job(job.id) == job


async def test_store_failed_write_spares_its_batch(open_store: OpenStore) -> None:
    store = await open_store()
    assert isinstance(store, SQLiteStore)

    def broken(db: sqlite3.Connection) -> None:
        raise ValueError("broken write")

    good = [store.enqueue(new_job()) for _ in range(5)]
    results = await asyncio.gather(
        *good[:2], store._write(broken), *good[2:], return_exceptions=True
    )

    assert isinstance(results[2], ValueError)
    stored = [result for result in results if isinstance(result, tuple)]
    assert len(stored) == 5
    assert len(await store.jobs()) == 5
