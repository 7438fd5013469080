"""SSE fan-out: delivery latency, delivered fraction and server memory per subscriber.

Subscribers are raw asyncio connections spread over several client processes, so that
the clients' own reading does not dominate the latency of a large fan-out.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import time
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import httpx

from .procs import Server, rss_bytes

CONNECT_BATCH = 500


def run_fanout(
    server: Server,
    *,
    kind: str,
    subscribers: int,
    triggers: int,
    client_processes: int,
) -> dict[str, Any]:
    """Connect ``subscribers`` streams, publish ``triggers`` changes, and measure delivery."""
    path = "/api/events?status=succeeded" if kind == "scheduler" else "/events"
    parts = urlsplit(server.url)
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes = []
    share = [subscribers // client_processes] * client_processes
    share[0] += subscribers - sum(share)
    baseline_rss = rss_bytes(server.pid)
    for count in share:
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_client_main, args=(parts.hostname, parts.port, path, count, child_end)
        )
        process.start()
        pipes.append(parent_end)
        processes.append(process)
    connected = sum(pipe.recv() for pipe in pipes)
    time.sleep(1.0)  # let the server settle before reading its idle memory
    idle_rss = rss_bytes(server.pid)

    for _ in range(triggers):
        _trigger(server.url, kind)
        time.sleep(0.5 if subscribers <= 1000 else 1.5)
    time.sleep(1.0)
    latencies: list[float] = []
    for pipe in pipes:
        pipe.send("stop")
        latencies.extend(pipe.recv())
    for process in processes:
        process.join(timeout=30)

    latencies.sort()
    expected = subscribers * triggers
    return {
        "subscribers": subscribers,
        "connected": connected,
        "delivered_fraction": len(latencies) / expected if expected else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "rss_per_subscriber_kib": (idle_rss - baseline_rss) / max(connected, 1) / 1024,
    }


def _trigger(url: str, kind: str) -> None:
    if kind == "scheduler":
        response = httpx.post(url + "/api/jobs", json={"task": "sleep", "params": {"seconds": 0}})
    else:
        response = httpx.post(url + "/publish")
    response.raise_for_status()


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(fraction * 1000) - 1]


def _client_main(host: str, port: int, path: str, count: int, pipe: Connection) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_clients(host, port, path, count, pipe))


async def _clients(host: str, port: int, path: str, count: int, pipe: Connection) -> None:
    latencies: list[float] = []
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"

    writers: list[asyncio.StreamWriter] = []

    async def subscriber() -> asyncio.StreamReader | None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return None
        writers.append(writer)  # a dropped writer may close its connection
        writer.write(request.encode())
        while await reader.readline() not in (b"\r\n", b""):
            pass  # response headers
        return reader

    readers: list[asyncio.StreamReader] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = await asyncio.gather(
            *(subscriber() for _ in range(min(CONNECT_BATCH, count - start)))
        )
        readers.extend(reader for reader in batch if reader is not None)
    pipe.send(len(readers))

    async def read(reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            if not line.startswith(b"data: "):
                continue
            received = time.time()
            data = json.loads(line[6:])
            if "sent_at" in data:
                latencies.append(received - data["sent_at"])
            elif data.get("finished_at"):
                finished = datetime.fromisoformat(data["finished_at"].replace("Z", "+00:00"))
                latencies.append(received - finished.timestamp())

    tasks = [asyncio.create_task(read(reader)) for reader in readers]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [
        o
        for o in outcomes
        if isinstance(o, Exception) and not isinstance(o, asyncio.CancelledError)
    ]
    if failures:
        print(f"subscriber failures: {failures[:3]!r}", flush=True)
    for writer in writers:
        writer.close()
    pipe.send(latencies)
