"""Run a task's function on the event loop, in a thread, or in a process pool."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from .context import ProgressSink, QueueSink, TaskContext
from .registry import Task, TaskKind

if TYPE_CHECKING:
    from multiprocessing.managers import SyncManager

    from pydantic import BaseModel

logger = logging.getLogger(__name__)

# How long a call may outlive its job before a warning reports that it keeps its slot.
WARN_AFTER_S = 5.0


class TaskRunner:
    """Start task functions and deliver cancellation requests to them.

    The process pool and its manager (which carries progress reports and cancellation flags
    between processes) start on the first CPU-bound job, so services that never run one pay
    nothing for them.
    """

    def __init__(self, sink: ProgressSink, max_processes: int) -> None:
        self._sink = sink
        self._max_processes = max_processes
        self._cancel_flags: dict[str, Any] = {}
        # Thread and process calls by job id, kept until they really return: cancelling a
        # job cannot stop them, and their slot stays in use until they do.
        self._calls: dict[str, Future[Any]] = {}
        self._threads = ThreadPoolExecutor(max_processes, thread_name_prefix="task")
        self._pool: ProcessPoolExecutor | None = None
        self._manager: SyncManager | None = None
        self._progress_queue: Any = None
        self._progress_thread: threading.Thread | None = None

    def request_cancel(self, job_id: str) -> None:
        flag = self._cancel_flags.get(job_id)
        if flag is not None:
            flag.set()

    async def run(self, task: Task, job_id: str, attempt: int, params: BaseModel) -> Any:
        """Run ``task`` to completion and return its result; its exceptions propagate."""
        try:
            if task.kind is TaskKind.PROCESS:
                return await self._run_in_process(task, job_id, attempt, params)

            flag = threading.Event()
            self._cancel_flags[job_id] = flag
            context = TaskContext(job_id, attempt, self._sink, flag.is_set)
            if task.kind is TaskKind.ASYNC:
                return await task.function(context, params)
            call = self._threads.submit(
                contextvars.copy_context().run, task.function, context, params
            )
            return await self._watch(job_id, call)
        finally:
            self._cancel_flags.pop(job_id, None)

    async def _watch(self, job_id: str, call: Future[Any]) -> Any:
        self._calls[job_id] = call
        call.add_done_callback(lambda _: self._calls.pop(job_id, None))
        return await asyncio.wrap_future(call)

    async def wait_returned(self, job_id: str) -> None:
        """Wait until the job's thread or process call has returned, if it has one."""
        call = self._calls.get(job_id)
        if call is None or call.done():
            return
        returned = asyncio.wrap_future(call)
        # The job's outcome is recorded already, so only the end of the call matters here.
        returned.add_done_callback(_ignore_outcome)
        done, _ = await asyncio.wait({returned}, timeout=WARN_AFTER_S)
        if not done:
            logger.warning(
                "job %s ended but its task call is still running; its slot stays in use "
                "until the call returns (the task should check context.cancelled)",
                job_id,
            )
            await asyncio.wait({returned})

    async def _run_in_process(self, task: Task, job_id: str, attempt: int, params: Any) -> Any:
        pool, manager = self._ensure_pool()
        flag = manager.Event()
        self._cancel_flags[job_id] = flag
        try:
            call = pool.submit(
                _call_in_child,
                task.function,
                (job_id, attempt, params, self._progress_queue, flag),
            )
            return await self._watch(job_id, call)
        except BrokenProcessPool:
            # A child died (killed, or out of memory). The pool cannot be reused, so the
            # next CPU-bound job starts a fresh one.
            logger.warning("replacing the process pool after a worker process died")
            self._pool = None
            raise

    def _ensure_pool(self) -> tuple[ProcessPoolExecutor, SyncManager]:
        if multiprocessing.current_process().daemon:
            # Python forbids daemonic processes to start children. The hypercorn command
            # runs its workers as daemonic processes unless it is given --workers 0.
            raise RuntimeError(
                "CPU-bound tasks run in child processes, which this daemonic server "
                "process cannot start: serve with python -m quart_app, or with "
                "hypercorn --workers 0"
            )
        # "spawn" avoids forking a process that already runs threads (aiosqlite, executors).
        context = multiprocessing.get_context("spawn")
        if self._manager is None:
            self._manager = context.Manager()
            self._progress_queue = self._manager.Queue()
            self._progress_thread = threading.Thread(
                target=self._forward_progress, name="task-progress", daemon=True
            )
            self._progress_thread.start()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._max_processes, mp_context=context)
        return self._pool, self._manager

    def _forward_progress(self) -> None:
        while True:
            try:
                item = self._progress_queue.get()
            except (EOFError, OSError):
                return
            if item is None:
                return
            self._sink(*item)

    def close(self) -> None:
        """Stop the pools and the manager; calls still running are abandoned."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._manager is not None:
            with contextlib.suppress(EOFError, OSError):
                self._progress_queue.put(None)
            if self._progress_thread is not None:
                self._progress_thread.join(timeout=2)
            self._manager.shutdown()
            self._manager = None


def _call_in_child(function: Any, args: tuple[Any, ...]) -> Any:
    job_id, attempt, params, progress_queue, flag = args
    context = TaskContext(job_id, attempt, QueueSink(progress_queue), flag.is_set)
    return function(context, params)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    # Reading the exception keeps asyncio from logging it as never retrieved.
    if not future.cancelled():
        future.exception()
