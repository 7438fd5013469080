"""Load generators: wrk when installed, otherwise a small asyncio client with keep-alive."""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    client_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_load(
    url: str,
    *,
    seconds: float,
    connections: int,
    method: str = "GET",
    body: bytes = b"",
    use_wrk: bool | None = None,
) -> LoadResult:
    """Send requests to ``url`` over ``connections`` keep-alive connections for ``seconds``."""
    if use_wrk is None:
        use_wrk = have_wrk()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if use_wrk:
        result = _wrk(url, seconds=seconds, connections=connections, method=method, body=body)
    else:
        started = resource.getrusage(resource.RUSAGE_SELF)
        result = asyncio.run(_python_load(url, seconds, connections, method, body))
        ended = resource.getrusage(resource.RUSAGE_SELF)
        used = (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime)
        return LoadResult(result.requests, result.seconds, result.errors, used)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LoadResult(result.requests, result.seconds, result.errors, used)


def _wrk(url: str, *, seconds: float, connections: int, method: str, body: bytes) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "{method}"\n')
        if body:
            script.write(f"wrk.body = [[{body.decode()}]]\n")
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        script.name,
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    Path(script.name).unlink()
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if total is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    duration = float(total.group(2)) * {"s": 1.0, "ms": 0.001, "m": 60.0}[total.group(3)]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return LoadResult(int(total.group(1)), duration, errors, 0.0)


async def _python_load(
    url: str, seconds: float, connections: int, method: str, body: bytes
) -> LoadResult:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    deadline = time.monotonic() + seconds
    counts = [0, 0]  # requests, errors

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                counts[0] += 1
                if not status_line.split(b" ")[1].startswith(b"2"):
                    counts[1] += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return LoadResult(counts[0], time.monotonic() - started, counts[1], 0.0)
