"""Server processes for benchmarks, and the CPU time and memory they use, from /proc."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def raise_file_limit() -> int:
    """Allow as many open sockets as the hard limit; children inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tree_pids(root: int) -> list[int]:
    """Return ``root`` and all its descendants that are alive."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User plus system CPU time of a process tree, in seconds."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime and stime
    return total / CLOCK_TICKS


def rss_bytes(root: int) -> int:
    """Resident memory of a process tree."""
    total = 0
    for pid in tree_pids(root):
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
        total += pages * PAGE_BYTES
    return total


@dataclass
class Server:
    """A server on a loopback socket that this process owns and hands over as ``fd://N``."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None

    _port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            assert self.sock is not None
            self._port = self.sock.getsockname()[1]
        return f"http://127.0.0.1:{self._port}"

    def start(self, log_dir: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.set_inheritable(True)
        command = [part.replace("{fd}", str(self.sock.fileno())) for part in self.command]
        fds: tuple[int, ...] = (self.sock.fileno(),)
        if "{port}" in self.command:
            # The server binds the port itself; another process could take it in between,
            # which is acceptable for a benchmark on loopback.
            self._port = self.sock.getsockname()[1]
            command = [part.replace("{port}", str(self._port)) for part in command]
            self.sock.close()
            fds = ()
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT)}
        log = (log_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=fds,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early with {self.process.returncode}")
            try:
                if httpx.get(self.url + self.health_path, timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready within {timeout_s} s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.sock is not None:
            self.sock.close()
        self.process = None
        self.sock = None
        self._port = None


def hypercorn(module_app: str, *, workers: int = 1) -> list[str]:
    """Command to serve a reference app with Hypercorn's own CLI on the inherited socket."""
    return [
        sys.executable,
        "-m",
        "hypercorn",
        module_app,
        "--bind",
        "fd://{fd}",
        "-w",
        str(workers),
    ]


def scheduler_on_uvicorn() -> list[str]:
    """Return the command for the scheduler on uvicorn with uvloop and httptools."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "quart_app:app",
        # uvicorn treats an inherited socket (--fd) as a Unix socket and leaves Nagle's
        # algorithm on, which stalls small responses, so it binds its own port instead.
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def scheduler(*, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "quart_app", "--bind", "fd://{fd}", "--workers", str(workers)]
