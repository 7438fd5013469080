"""Test helpers: waiting for conditions and running a real server process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from quart import Quart
from quart.testing.app import TestApp

from quart_app.jobs import Job, JobStatus, new_job_id, utcnow

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 10.0, interval_s: float = 0.02
) -> T:
    """Call ``probe`` until it returns a value other than ``None``/``False``; fail after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last value {value!r})")
        await asyncio.sleep(interval_s)


def max_overlap(jobs: list[Job]) -> int:
    """Return the largest number of jobs that ran at the same moment."""
    points = []
    for job in jobs:
        assert job.started_at is not None and job.finished_at is not None
        points += [(job.started_at, 1), (job.finished_at, -1)]
    running = peak = 0
    for _, delta in sorted(points, key=lambda point: (point[0], point[1])):
        running += delta
        peak = max(peak, running)
    return peak


def make_job(**changes: Any) -> Job:
    """A queued ``sleep`` job, not yet stored, with ``changes`` applied."""
    now = utcnow()
    job = Job(
        id=new_job_id(),
        task="sleep",
        params={"seconds": 1},
        status=JobStatus.QUEUED,
        priority=0,
        attempt=1,
        max_attempts=3,
        timeout_s=60,
        created_at=now,
        scheduled_at=now,
    )
    return job.evolve(**changes)


def serving(app: Quart) -> TestApp:
    """Run the app's startup and shutdown hooks around a block, with room for slow machines."""
    return TestApp(app, startup_timeout=30, shutdown_timeout=30)


def listening_socket() -> socket.socket:
    """A socket bound to a free loopback port, handed to the server as ``fd://N``.

    The test keeps it open, so a restarted server listens on the same port and clients
    that connect during the restart wait in the backlog instead of being refused.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ServerProcess:
    """``python -m quart_app`` in a subprocess on a loopback socket owned by the test."""

    def __init__(self, env: dict[str, str], log_path: Path, *, workers: int = 1) -> None:
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []
        self.root_path = ""

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("SCHEDULER_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        # Serve this checkout (and let SCHEDULER_TASKS import tests.*) whether or not the
        # package is installed in editable mode.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "quart_app",
            "--bind",
            f"fd://{self.sock.fileno()}",
            "--workers",
            str(self.workers),
            "--root-path",
            self.root_path,
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        # A new session lets the test end the server and its worker processes together.
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=str(self.log_path.parent),
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(self.sock.fileno(),),
            start_new_session=True,
        )
        log.close()

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:

            async def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited early:\n{self.log()}")
                try:
                    response = await client.get(f"{self.root_path}/healthz")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

            await wait_for(ready, timeout_s=timeout_s, interval_s=0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """End the server at once, as a crash or an out-of-memory kill would."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        """Send SIGTERM and wait for a graceful exit; return the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        self.kill()
        self.sock.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
