"""How far estimates land from actual completion, at submission and half-way through."""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import datetime
from typing import Any

import httpx


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


async def estimate_error(url: str, *, jobs: int, mean_s: float, seed: int = 7) -> dict[str, Any]:
    """Submit a mix of ``sleep`` and ``bench.work`` jobs and compare estimates with outcomes.

    ``bench.work`` durations vary by ±20% around ``mean_s``, and the scheduler learns them
    only from finished runs; ``sleep`` durations follow from the params.
    """
    rng = random.Random(seed)
    errors: dict[str, dict[str, list[float]]] = {
        name: {"at_submission": [], "half_way": []} for name in ("sleep", "bench.work")
    }
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        # A few runs first, so that bench.work has a history to learn from.
        for _ in range(3):
            await _run_one(client, "bench.work", mean_s, None)

        async def one(index: int) -> None:
            await asyncio.sleep(index * mean_s / 4)
            name = "sleep" if index % 2 == 0 else "bench.work"
            seconds = (
                rng.uniform(0.5, 1.5) * mean_s
                if name == "sleep"
                else rng.uniform(0.8, 1.2) * mean_s
            )
            await _run_one(client, name, seconds, errors[name])

        await asyncio.gather(*(one(index) for index in range(jobs)))

    return {
        name: {
            point: {
                "mean_abs_error_s": statistics.fmean(abs(value) for value in values),
                "samples": len(values),
            }
            for point, values in by_point.items()
            if values
        }
        for name, by_point in errors.items()
    }


async def _run_one(
    client: httpx.AsyncClient, task: str, seconds: float, errors: dict[str, list[float]] | None
) -> None:
    response = await client.post("/api/jobs", json={"task": task, "params": {"seconds": seconds}})
    job = response.json()
    at_submission = _parse(job["estimated_time_completion"])
    half_way: datetime | None = None
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        await asyncio.sleep(0.05)
        job = (await client.get(f"/api/jobs/{job['id']}")).json()
        if half_way is None and job["status"] == "running" and job["progress"] >= 0.5:
            half_way = _parse(job["estimated_time_completion"])
    if errors is None:
        return
    finished = _parse(job["finished_at"])
    errors["at_submission"].append((at_submission - finished).total_seconds())
    if half_way is not None:
        errors["half_way"].append((half_way - finished).total_seconds())
