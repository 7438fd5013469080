"""Several worker processes on shared listening sockets, kept running by a small parent.

Each worker is a single-process ``python -m quart_app`` that serves an inherited socket
(``--bind fd://N``), so it drains gracefully on SIGTERM like a lone server does. The parent
forwards SIGTERM and SIGINT to every worker, and starts a replacement for a worker that
dies, whose start-up then requeues the jobs the dead worker held.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from hypercorn.config import Config

logger = logging.getLogger(__name__)

# A worker that exits this soon after its start counts as failing to start.
QUICK_EXIT_S = 10.0
# That many quick exits in a row stop the whole server instead of restarting forever.
MAX_QUICK_EXITS = 5


def run_workers(config: Config, count: int, worker_args: list[str]) -> int:
    """Serve ``config.bind`` with ``count`` workers until SIGTERM or SIGINT; return an exit code."""
    sockets = config.create_sockets()
    listening = [*sockets.insecure_sockets, *sockets.secure_sockets]
    binds: list[str] = []
    for sock in listening:
        sock.set_inheritable(True)
        binds += ["--bind", f"fd://{sock.fileno()}"]
    command = [sys.executable, "-m", "quart_app", "--workers", "1", *binds, *worker_args]
    fds = tuple(sock.fileno() for sock in listening)

    supervisor = _WorkerSet(command, fds)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        for _ in range(count):
            supervisor.start_worker()
        return supervisor.wait()
    finally:
        for sock in listening:
            sock.close()


class _WorkerSet:
    def __init__(self, command: list[str], fds: tuple[int, ...]) -> None:
        self._command = command
        self._fds = fds
        self._workers: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self._stopping = False
        self._quick_exits = 0
        self.exit_code = 0

    def start_worker(self) -> None:
        process = subprocess.Popen(self._command, pass_fds=self._fds)
        self._workers[process.pid] = (process, time.monotonic())
        logger.info("started worker process %d", process.pid)

    def stop(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            logger.info("stopping %d worker processes", len(self._workers))
        self._stopping = True
        for process, _ in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        while self._workers:
            pid, status = os.waitpid(-1, 0)
            entry = self._workers.pop(pid, None)
            if entry is None:
                continue
            process, started_at = entry
            process.returncode = os.waitstatus_to_exitcode(status)
            if self._stopping:
                continue
            self._replace(process, time.monotonic() - started_at)
        logger.info("stopped all worker processes")
        return self.exit_code

    def _replace(self, process: subprocess.Popen[bytes], lived_s: float) -> None:
        self._quick_exits = self._quick_exits + 1 if lived_s < QUICK_EXIT_S else 0
        if self._quick_exits >= MAX_QUICK_EXITS:
            logger.error(
                "worker processes keep exiting within %.0f s of starting (last exit code %s); "
                "stopping the server",
                QUICK_EXIT_S,
                process.returncode,
            )
            self.exit_code = 1
            self.stop(signal.SIGTERM, None)
            return
        logger.warning(
            "worker process %d exited with code %s; starting a replacement",
            process.pid,
            process.returncode,
        )
        self.start_worker()
