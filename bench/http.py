"""Request throughput and server CPU per request, interleaved with reference apps."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from .load import run_load
from .procs import Server, cpu_seconds


@dataclass(frozen=True)
class Sample:
    rps: float
    server_cpu_us: float  # server CPU time per request
    client_cpu_us: float  # load generator CPU time per request
    errors: int


@dataclass(frozen=True)
class Target:
    """One side of a comparison: a server, and the request to send it."""

    label: str
    server: Server
    path: str
    method: str = "GET"
    body: bytes = b""


def measure(target: Target, *, seconds: float, connections: int) -> Sample:
    cpu_before = cpu_seconds(target.server.pid)
    result = run_load(
        target.server.url + target.path,
        seconds=seconds,
        connections=connections,
        method=target.method,
        body=target.body,
    )
    cpu_used = cpu_seconds(target.server.pid) - cpu_before
    requests = max(result.requests, 1)
    return Sample(
        rps=result.rps,
        server_cpu_us=cpu_used / requests * 1e6,
        client_cpu_us=result.client_cpu_s / requests * 1e6,
        errors=result.errors,
    )


def compare(
    targets: list[Target], *, repeats: int, seconds: float, connections: int
) -> dict[str, list[Sample]]:
    """Measure each target ``repeats`` times, interleaved (A B A B ...), after one warm-up."""
    for target in targets:
        measure(target, seconds=min(seconds, 1.0), connections=connections)
    samples: dict[str, list[Sample]] = {target.label: [] for target in targets}
    for _ in range(repeats):
        for target in targets:
            samples[target.label].append(measure(target, seconds=seconds, connections=connections))
    return samples


def summarise(samples: list[Sample]) -> dict[str, Any]:
    rps = [sample.rps for sample in samples]
    cpu = [sample.server_cpu_us for sample in samples]
    client = [sample.client_cpu_us for sample in samples]
    return {
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "cpu_us_median": statistics.median(cpu),
        "cpu_us_min": min(cpu),
        "cpu_us_max": max(cpu),
        "client_cpu_us_median": statistics.median(client),
        "errors": sum(sample.errors for sample in samples),
        "runs": len(samples),
    }


def pair_ratios(product: list[Sample], reference: list[Sample]) -> dict[str, float]:
    """Ratios of runs taken side by side (run i of each), then their median."""
    rps = [mine.rps / ref.rps for mine, ref in zip(product, reference, strict=True) if ref.rps]
    cpu = [
        ref.server_cpu_us / mine.server_cpu_us
        for mine, ref in zip(product, reference, strict=True)
        if mine.server_cpu_us
    ]
    return {
        "rps_ratio": statistics.median(rps) if rps else 0.0,
        "rps_ratio_min": min(rps, default=0.0),
        "rps_ratio_max": max(rps, default=0.0),
        # Above 1 means the product spends less server CPU per request than the reference.
        "cpu_ratio": statistics.median(cpu) if cpu else 0.0,
    }
