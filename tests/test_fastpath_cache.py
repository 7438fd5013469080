"""The fast path's caches never serve a job that another connection or process has changed.

The store keeps decoded jobs while ``PRAGMA data_version`` is unchanged, and the fast path
keeps encoded responses for finished jobs. Each test polls first, so that both caches hold
the job, then changes the row outside the app's own connections and polls again.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_app.config import Settings
from quart_app.jobs import JobError, JobStatus, utcnow
from quart_app.scheduler import Scheduler, Submission
from quart_app.storage import JobStore, from_url
from quart_app.storage.sqlite import SQLiteStore

from .helpers import REPO_ROOT, make_job, wait_for

DONE = {"message": "Job is done!", "status": "succeeded"}


@pytest.fixture
async def other_store(settings: Settings) -> AsyncIterator[JobStore]:
    """A second store on the app's database file, as another worker process would open."""
    store = from_url(settings.store_url)
    await store.open()
    yield store
    await store.close()


def database_path(settings: Settings) -> str:
    return settings.store_url.removeprefix("sqlite:///")


async def finished_job(scheduler: Scheduler) -> str:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))

    async def done() -> bool:
        return (await scheduler.get(job.id)).status is JobStatus.SUCCEEDED

    await wait_for(done)
    return job.id


async def poll(client: Client, path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status_code, json.loads(await response.get_data())


async def poll_twice(client: Client, path: str) -> tuple[int, Any]:
    """Poll ``path`` twice, so that the second response comes from the caches."""
    first = await poll(client, path)
    second = await poll(client, path)
    assert second == first
    return second


def write_raw(path: str, sql: str, params: tuple[Any, ...]) -> None:
    """Commit one statement on a new connection, as a tool outside the app would."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(sql, params)
    finally:
        connection.close()


# Through the fast path -------------------------------------------------------------------


async def test_status_shows_change_to_finished_job(
    client: Client, scheduler: Scheduler, settings: Settings
) -> None:
    job_id = await finished_job(scheduler)
    status, body = await poll_twice(client, f"/api?id={job_id}")
    assert status == 200
    assert body["message"] == DONE["message"]

    error = json.dumps(JobError("manual", "marked failed by hand").to_dict())
    write_raw(
        database_path(settings),
        "UPDATE jobs SET status = 'failed', error = ? WHERE id = ?",
        (error, job_id),
    )

    status, body = await poll(client, f"/api?id={job_id}")
    assert status == 200
    assert body == {
        "message": "Job failed!",
        "status": "failed",
        "error": {"type": "manual", "message": "marked failed by hand"},
    }


async def test_resource_shows_change_to_finished_job(
    client: Client, scheduler: Scheduler, settings: Settings
) -> None:
    job_id = await finished_job(scheduler)
    status, body = await poll_twice(client, f"/api/jobs/{job_id}")
    assert status == 200
    assert body["status_reason"] is None

    write_raw(
        database_path(settings),
        "UPDATE jobs SET status_reason = ? WHERE id = ?",
        ("checked by hand", job_id),
    )

    status, body = await poll(client, f"/api/jobs/{job_id}")
    assert status == 200
    assert body["status_reason"] == "checked by hand"


async def test_purge_by_other_store_gives_410(
    client: Client, scheduler: Scheduler, other_store: JobStore
) -> None:
    job_id = await finished_job(scheduler)
    assert (await poll_twice(client, f"/api/jobs/{job_id}"))[0] == 200
    assert (await poll_twice(client, f"/api?id={job_id}"))[0] == 200

    purged = await other_store.purge(utcnow() + timedelta(seconds=1), utcnow() - timedelta(days=1))
    assert purged == 1

    status, body = await poll(client, f"/api/jobs/{job_id}")
    assert status == 410
    assert "purged" in body["message"]
    assert await poll(client, f"/api?id={job_id}") == (400, {"message": "Invalid id!"})


async def test_purge_by_other_process_gives_410(
    client: Client, scheduler: Scheduler, settings: Settings
) -> None:
    job_id = await finished_job(scheduler)
    assert (await poll_twice(client, f"/api/jobs/{job_id}"))[0] == 200
    script = (
        "import asyncio, sys\n"
        "from datetime import timedelta\n"
        "from quart_app.jobs import utcnow\n"
        "from quart_app.storage import from_url\n"
        "async def main():\n"
        "    store = from_url(sys.argv[1])\n"
        "    await store.open()\n"
        "    try:\n"
        "        print(await store.purge(utcnow() + timedelta(seconds=1), utcnow()))\n"
        "    finally:\n"
        "        await store.close()\n"
        "asyncio.run(main())\n"
    )

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, settings.store_url, cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert output.strip() == b"1"

    status, body = await poll(client, f"/api/jobs/{job_id}")
    assert status == 410
    assert "purged" in body["message"]


async def test_status_shows_cancel_by_other_store(
    client: Client, scheduler: Scheduler, other_store: JobStore
) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}, delay_s=600))
    status, body = await poll(client, f"/api?id={job.id}")
    assert status == 202
    assert body["status"] == "queued"
    await poll(client, f"/api?id={job.id}")

    cancelled = await other_store.mark_cancelled(job, None, "cancelled from another worker")
    assert cancelled is not None

    status, body = await poll(client, f"/api?id={job.id}")
    assert status == 200
    assert body == {"message": "Job was cancelled!", "status": "cancelled"}
    status, body = await poll(client, f"/api/jobs/{job.id}")
    assert status == 200
    assert body["status_reason"] == "cancelled from another worker"


async def test_queued_job_keeps_moving_estimate(client: Client, scheduler: Scheduler) -> None:
    # The decoded job is cached, but a queued job's body must still be built per request.
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}, delay_s=600))
    _, first = await poll(client, f"/api?id={job.id}")

    async def estimate_moved() -> bool:
        _, body = await poll(client, f"/api?id={job.id}")
        return bool(body["seconds_to_completion"] < first["seconds_to_completion"])

    await wait_for(estimate_moved)


async def test_cached_response_keeps_root_path(client: Client, scheduler: Scheduler) -> None:
    job_id = await finished_job(scheduler)
    await poll_twice(client, f"/api?id={job_id}")

    response = await client.get(f"/prefix/api?id={job_id}", root_path="/prefix")

    assert response.status_code == 200
    body = json.loads(await response.get_data())
    assert body["result_url"] == f"/prefix/api/jobs/{job_id}/result"


# The store's point read ------------------------------------------------------------------


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    stores = [SQLiteStore(str(tmp_path / "jobs.db")) for _ in range(2)]
    for store in stores:
        await store.open()
    yield stores[0], stores[1]
    for store in stores:
        await store.close()


async def test_point_read_reuses_job_while_row_unchanged(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    reader, writer = two_stores
    job, _ = await writer.enqueue(make_job())

    first = reader.job_nowait(job.id)
    assert first is not None
    assert reader.job_nowait(job.id) is first

    # A heartbeat commits to another table: the data version changes, but not this job.
    await writer.heartbeat("worker-1", 2)
    assert reader.job_nowait(job.id) is first


async def test_point_read_sees_commit_by_other_store(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    reader, writer = two_stores
    job, _ = await writer.enqueue(make_job())
    first = reader.job_nowait(job.id)
    assert first is not None
    assert first.status is JobStatus.QUEUED

    await writer.mark_cancelled(job, None, "no longer needed")

    changed = reader.job_nowait(job.id)
    assert changed is not None
    assert changed is not first
    assert changed.status is JobStatus.CANCELLED
    assert changed.status_reason == "no longer needed"


async def test_point_read_sees_commit_by_own_writer(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    store, _ = two_stores
    job, _ = await store.enqueue(make_job())
    assert store.job_nowait(job.id) is not None

    await store.mark_cancelled(job, None, "no longer needed")

    changed = store.job_nowait(job.id)
    assert changed is not None
    assert changed.status is JobStatus.CANCELLED


async def test_point_read_returns_none_after_delete(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    reader, writer = two_stores
    job, _ = await writer.enqueue(make_job())
    assert reader.job_nowait(job.id) is not None

    write_raw(writer.path, "DELETE FROM jobs WHERE id = ?", (job.id,))
    await asyncio.sleep(0)  # the next turn of the event loop

    assert reader.job_nowait(job.id) is None


async def test_point_read_checks_version_once_per_turn(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    # Reads in one turn of the event loop serve requests that arrived before the first
    # read, so they share its version. The next turn reads the commit.
    reader, writer = two_stores
    job, _ = await writer.enqueue(make_job())
    first = reader.job_nowait(job.id)
    assert first is not None

    write_raw(writer.path, "UPDATE jobs SET priority = 7 WHERE id = ?", (job.id,))
    same_turn = reader.job_nowait(job.id)
    await asyncio.sleep(0)
    next_turn = reader.job_nowait(job.id)

    assert same_turn is first
    assert next_turn is not None
    assert next_turn.priority == 7


async def test_point_cache_drops_oldest_beyond_limit(
    two_stores: tuple[SQLiteStore, SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, writer = two_stores
    monkeypatch.setattr(type(reader._point_cache), "MAX_ENTRIES", 2)
    jobs = [(await writer.enqueue(make_job()))[0] for _ in range(3)]

    first_reads = [reader.job_nowait(job.id) for job in jobs]

    # The first job was dropped to make room, so it is decoded again; the last one is kept.
    assert reader.job_nowait(jobs[0].id) is not first_reads[0]
    assert reader.job_nowait(jobs[2].id) is first_reads[2]
