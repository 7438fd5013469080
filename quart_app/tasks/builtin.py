"""Tasks that ship with the service: ``sleep`` (the simulated job) and ``primes`` (CPU-bound)."""

from __future__ import annotations

import asyncio
import math
import time

from pydantic import BaseModel, Field

from .context import TaskContext
from .registry import task

# Progress reports per job; enough for a smooth progress bar, few enough to stay cheap.
_PROGRESS_STEPS = 20


class SleepParams(BaseModel):
    seconds: float = Field(ge=0, le=86400, description="How long the job runs, in seconds.")


class SleepResult(BaseModel):
    slept_s: float


@task("sleep", params=SleepParams, estimate_s=lambda params: params.seconds)
async def sleep(context: TaskContext, params: SleepParams) -> SleepResult:
    """Wait for the given number of seconds, reporting progress as it goes.

    This is the simulated job that ``POST /api`` submits when it gets no body.
    """
    started = time.monotonic()
    step_s = params.seconds / _PROGRESS_STEPS
    for step in range(1, _PROGRESS_STEPS + 1):
        # Sleep until the step's deadline rather than for a fixed step, so that the
        # scheduling delay of each wake-up does not add up over the job.
        await asyncio.sleep(max(0.0, started + step * step_s - time.monotonic()))
        context.report(step / _PROGRESS_STEPS)
    return SleepResult(slept_s=round(time.monotonic() - started, 3))


class PrimesParams(BaseModel):
    below: int = Field(ge=2, le=2_000_000_000, description="Count the primes below this number.")


class PrimesResult(BaseModel):
    below: int
    count: int


@task("primes", params=PrimesParams, cpu_bound=True)
def count_primes(context: TaskContext, params: PrimesParams) -> PrimesResult:
    """Count the primes below a limit with a segmented sieve, in a separate process."""
    limit = params.below
    base = _small_primes(math.isqrt(limit) + 1)
    segment_size = max(1 << 16, math.isqrt(limit))
    count = 0
    for low in range(2, limit, segment_size):
        context.raise_if_cancelled()
        high = min(low + segment_size, limit)
        count += _count_segment(low, high, base)
        context.report((high - 2) / max(limit - 2, 1), f"sieved up to {high:,}")
    return PrimesResult(below=limit, count=count)


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"[: min(2, limit)]
    for number in range(2, math.isqrt(limit - 1) + 1 if limit > 1 else 0):
        if sieve[number]:
            sieve[number * number :: number] = bytes(len(range(number * number, limit, number)))
    return [number for number, flag in enumerate(sieve) if flag]


def _count_segment(low: int, high: int, base: list[int]) -> int:
    segment = bytearray([1]) * (high - low)
    for prime in base:
        if prime * prime >= high:
            break
        start = max(prime * prime, (low + prime - 1) // prime * prime)
        segment[start - low :: prime] = bytes(len(range(start, high, prime)))
    return segment.count(1)
