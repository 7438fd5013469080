"""End-to-end throughput of zero-work jobs, from submission to success, and arq's for scale."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

ZERO_WORK_JOB = {"task": "sleep", "params": {"seconds": 0}}
ARQ_REDIS_DATABASE = 15


async def scheduler_jobs_per_s(url: str, jobs: int, connections: int) -> dict[str, Any]:
    """Submit ``jobs`` over HTTP with ``connections`` clients; time until every one succeeded."""
    before = await _succeeded(url)
    started = time.monotonic()
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(jobs):
            queue.put_nowait(index)
        errors = 0

        async def submitter() -> None:
            nonlocal errors
            while not queue.empty():
                queue.get_nowait()
                response = await client.post("/api/jobs", json=ZERO_WORK_JOB)
                errors += response.status_code != 202

        await asyncio.gather(*(submitter() for _ in range(connections)))
        submitted_s = time.monotonic() - started
        deadline = time.monotonic() + 300
        while await _succeeded(url, client) < before + jobs - errors:
            if time.monotonic() > deadline:
                raise RuntimeError("jobs did not finish within 300 s")
            await asyncio.sleep(0.02)
    elapsed_s = time.monotonic() - started
    return {
        "jobs": jobs,
        "elapsed_s": elapsed_s,
        "submitted_s": submitted_s,
        "jobs_per_s": jobs / elapsed_s,
        "errors": errors,
    }


async def _succeeded(url: str, client: httpx.AsyncClient | None = None) -> int:
    if client is None:
        async with httpx.AsyncClient(base_url=url) as own:
            return await _succeeded(url, own)
    body = (await client.get("/healthz")).json()
    return int(body["jobs"]["succeeded"]) + int(body["jobs"]["failed"])


async def noop(ctx: dict[str, Any]) -> None:
    """arq's zero-work job."""


async def arq_jobs_per_s(jobs: int, concurrency: int) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op arq jobs on the local Redis, then run a burst worker over them.

    Uses Redis database ``ARQ_REDIS_DATABASE`` and empties it before and after.
    """
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    settings = RedisSettings(host="127.0.0.1", port=6379, database=ARQ_REDIS_DATABASE)
    pool = await create_pool(settings)
    await pool.flushdb()
    try:
        started = time.monotonic()

        async def enqueue(count: int) -> None:
            for _ in range(count):
                await pool.enqueue_job("noop")

        per_client = jobs // concurrency
        await asyncio.gather(*(enqueue(per_client) for _ in range(concurrency)))
        total = per_client * concurrency
        worker = Worker(
            functions=[noop],
            redis_settings=settings,
            burst=True,
            max_jobs=concurrency,
            handle_signals=False,
            poll_delay=0.01,
        )
        await worker.async_run()
        await worker.close()
        elapsed_s = time.monotonic() - started
        return {
            "jobs": total,
            "elapsed_s": elapsed_s,
            "jobs_per_s": total / elapsed_s,
            "completed": worker.jobs_complete,
        }
    finally:
        await pool.flushdb()
        await pool.aclose()
