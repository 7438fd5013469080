"""The object a running task receives to report progress and to notice cancellation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol


class TaskCancelledError(Exception):
    """Raised inside a task that stops early because its job was cancelled."""


class ProgressSink(Protocol):
    def __call__(self, job_id: str, fraction: float, message: str | None) -> None: ...


class TaskContext:
    """Handed to every task function as its first argument.

    ``report`` and ``cancelled`` are safe to call from the event loop, a worker thread or a
    pool process. Async tasks are cancelled at their next ``await``; thread and process tasks
    can only stop by checking ``cancelled`` (or calling ``raise_if_cancelled``).
    """

    def __init__(
        self,
        job_id: str,
        attempt: int,
        sink: ProgressSink,
        is_cancelled: Callable[[], bool],
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self._sink = sink
        self._is_cancelled = is_cancelled

    def report(self, fraction: float, message: str | None = None) -> None:
        """Record progress as a fraction from 0 to 1, with an optional short message."""
        if not math.isfinite(fraction):
            raise ValueError(f"progress fraction must be a finite number, got {fraction!r}")
        clamped = min(max(float(fraction), 0.0), 1.0)
        self._sink(self.job_id, clamped, message[:200] if message else None)

    @property
    def cancelled(self) -> bool:
        return self._is_cancelled()

    def raise_if_cancelled(self) -> None:
        if self._is_cancelled():
            raise TaskCancelledError(f"job {self.job_id} was cancelled")


class QueueSink:
    """A progress sink that forwards reports through a multiprocessing queue."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __call__(self, job_id: str, fraction: float, message: str | None) -> None:
        self._queue.put((job_id, fraction, message))
