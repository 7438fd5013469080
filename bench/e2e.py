"""End-to-end throughput of zero-work jobs, from submission to success, and arq's for scale."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from .load import run_load

ZERO_WORK_JOB = {"task": "sleep", "params": {"seconds": 0}}
ARQ_REDIS_DATABASE = 15


def scheduler_jobs_per_s(url: str, seconds: float, connections: int) -> dict[str, Any]:
    """Submit zero-work jobs over HTTP for ``seconds``; time until every one has succeeded.

    The submissions come from the load generator (wrk when installed), because a Python
    HTTP client cannot submit fast enough to keep the server busy.
    """
    before = asyncio.run(_succeeded(url))
    started = time.monotonic()
    result = run_load(
        url + "/api/jobs",
        seconds=seconds,
        connections=connections,
        method="POST",
        body=json.dumps(ZERO_WORK_JOB).encode(),
    )
    submitted_s = time.monotonic() - started
    jobs = result.requests - result.errors
    deadline = time.monotonic() + 300
    while asyncio.run(_succeeded(url)) < before + jobs:
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not finish within 300 s")
        time.sleep(0.02)
    elapsed_s = time.monotonic() - started
    return {
        "jobs": jobs,
        "elapsed_s": elapsed_s,
        "submitted_s": submitted_s,
        "jobs_per_s": jobs / elapsed_s,
        "errors": result.errors,
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
