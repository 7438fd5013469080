"""Tasks used by the tests; servers load them with SCHEDULER_TASKS=tests.tasks_for_tests."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from pydantic import BaseModel

from quart_app import TaskContext, task

RECORDED: list[str] = []


class Failures(BaseModel):
    failures: int


class Seconds(BaseModel):
    seconds: float


class Label(BaseModel):
    label: str


@task("test.flaky", params=Failures)
async def flaky(context: TaskContext, params: Failures) -> dict[str, int]:
    """Fail the first ``failures`` attempts, then succeed."""
    if context.attempt <= params.failures:
        raise RuntimeError(f"planned failure on attempt {context.attempt}")
    return {"attempt": context.attempt}


@task("test.blocking", params=Seconds)
def blocking(context: TaskContext, params: Seconds) -> str:
    """Block a thread, checking for cancellation between short sleeps."""
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        context.raise_if_cancelled()
        time.sleep(0.01)
    return "done"


@task("test.spin", params=Seconds, cpu_bound=True)
def spin(context: TaskContext, params: Seconds) -> int:
    """Keep a process busy, reporting progress and checking for cancellation."""
    started = time.monotonic()
    rounds = 0
    while (elapsed := time.monotonic() - started) < params.seconds:
        context.raise_if_cancelled()
        context.report(elapsed / params.seconds, f"round {rounds}")
        time.sleep(0.01)
        rounds += 1
    return rounds


@task("test.record", params=Label)
async def record(context: TaskContext, params: Label) -> str:
    RECORDED.append(params.label)
    return params.label


@task("test.unserialisable")
async def unserialisable(context: TaskContext, params: Any) -> object:
    return object()


@task("test.kill_server")
async def kill_server(context: TaskContext, params: Any) -> None:
    """Kill the process that runs the job, as a crash in native code would."""
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)


MARKUP = '<img src=x onerror="window.__injected = true">'


@task("test.markup")
async def markup(context: TaskContext, params: Any) -> None:
    """Report progress and fail with text that would run script if it were parsed as HTML."""
    context.report(0.5, MARKUP)
    await asyncio.sleep(0.3)
    raise ValueError(MARKUP)


@task("test.stubborn", params=Seconds)
def stubborn(context: TaskContext, params: Seconds) -> None:
    """Block a thread without ever checking for cancellation."""
    time.sleep(params.seconds)


@task("test.hang", params=Seconds)
async def hang(context: TaskContext, params: Seconds) -> None:
    """Sleep without declaring a duration, so that only a timeout ends it early."""
    await asyncio.sleep(params.seconds)
