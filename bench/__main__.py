"""``python -m bench``: run every benchmark once, interleaved with the reference apps.

``--quick`` shrinks every measurement so that CI can check the suite still runs; its
numbers mean nothing. ``--docs`` rewrites docs/benchmarks.md and its chart from the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from . import e2e, estimate_error, fanout, http, report
from .load import have_wrk
from .procs import (
    REPO_ROOT,
    Server,
    hypercorn,
    raise_file_limit,
    scheduler,
    scheduler_on_uvicorn,
)


@dataclass(frozen=True)
class Plan:
    seconds: float
    repeats: int
    connections: int
    e2e_jobs: int
    fanout_sizes: tuple[int, ...]
    fanout_triggers: int
    estimate_jobs: int
    estimate_mean_s: float


QUICK = Plan(1.0, 1, 16, 200, (100,), 2, 4, 0.4)
FULL = Plan(4.0, 5, 32, 5000, (100, 1000, 5000, 10000), 5, 20, 2.0)


def scheduler_env(store: Path, **extra: str) -> dict[str, str]:
    return {
        "SCHEDULER_STORE": f"sqlite:///{store}",
        "SCHEDULER_SIMULATED_SECONDS": "0,0",
        "SCHEDULER_CONCURRENCY": "8",
        "SCHEDULER_LOG_LEVEL": "WARNING",
        "SCHEDULER_TASKS": "bench.tasks",
        "SCHEDULER_MAX_STREAMS": "20000",
        "SCHEDULER_POLL_INTERVAL": "0.2",
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny runs, to check the suite")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--docs", action="store_true", help="rewrite docs/benchmarks.md")
    parser.add_argument("--skip", action="append", default=[], help="skip a section by name")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    raise_file_limit()

    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "plan": plan.__dict__, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        work = Path(folder)
        sections = {
            "http": lambda: http_section(plan, work),
            "workers": lambda: workers_section(plan, work),
            "e2e": lambda: e2e_section(plan, work),
            "fanout": lambda: fanout_section(plan, work),
            "estimates": lambda: estimates_section(plan, work),
        }
        for name, run in sections.items():
            if name in args.skip:
                continue
            print(f"== {name}", flush=True)
            results[name] = run()
            print(json.dumps(results[name], indent=2), flush=True)
    results["elapsed_s"] = time.time() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(report.summary(results))
    if args.docs:
        report.write_docs(results, REPO_ROOT / "docs")
    return 0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    packages = ("quart", "hypercorn", "aiosqlite", "arq", "redis")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(__import__("os").sched_getaffinity(0)),
        "load_generator": "wrk" if have_wrk() else "python asyncio client",
        "versions": versions,
        "date": time.strftime("%Y-%m-%d"),
    }


def _started(servers: list[Server], work: Path) -> None:
    for server in servers:
        server.start(work)


def http_section(plan: Plan, work: Path) -> dict[str, Any]:
    product = Server("scheduler", scheduler(), scheduler_env(work / "http.db"))
    quart_noop = Server("quart-noop", hypercorn("bench.apps.quart_noop:app"), health_path="/api")
    asgi_noop = Server("asgi-noop", hypercorn("bench.apps.asgi_noop:app"), health_path="/")
    # Same store file: both serve the same job, as two workers would.
    on_uvicorn = Server(
        "scheduler-uvicorn", scheduler_on_uvicorn(), scheduler_env(work / "http.db")
    )
    servers = [product, quart_noop, asgi_noop, on_uvicorn]
    try:
        _started(servers, work)
        job = httpx.post(product.url + "/api/jobs", json=e2e.ZERO_WORK_JOB).json()
        job_id = job["id"]
        scenarios = {
            "GET /api?id=": [
                http.Target("scheduler", product, f"/api?id={job_id}"),
                http.Target("quart-noop", quart_noop, f"/api?id={job_id}"),
                http.Target("asgi-noop", asgi_noop, f"/api?id={job_id}"),
            ],
            "GET /api?id= on uvicorn": [
                http.Target("scheduler on uvicorn", on_uvicorn, f"/api?id={job_id}"),
                http.Target("scheduler", product, f"/api?id={job_id}"),
                http.Target("asgi-noop", asgi_noop, f"/api?id={job_id}"),
            ],
            "GET /api/jobs/<id>": [
                http.Target("scheduler", product, f"/api/jobs/{job_id}"),
                http.Target("asgi-noop", asgi_noop, f"/api/jobs/{job_id}"),
            ],
            "POST /api": [
                http.Target("scheduler", product, "/api", "POST"),
                http.Target("quart-noop", quart_noop, "/api", "POST"),
            ],
            "POST /api/jobs": [
                http.Target(
                    "scheduler",
                    product,
                    "/api/jobs",
                    "POST",
                    json.dumps(e2e.ZERO_WORK_JOB).encode(),
                ),
                http.Target(
                    "quart-noop",
                    quart_noop,
                    "/api/jobs",
                    "POST",
                    json.dumps(e2e.ZERO_WORK_JOB).encode(),
                ),
            ],
        }
        return {name: _scenario(targets, plan) for name, targets in scenarios.items()}
    finally:
        for server in servers:
            server.stop()


def _scenario(targets: list[http.Target], plan: Plan) -> dict[str, Any]:
    samples = http.compare(
        targets, repeats=plan.repeats, seconds=plan.seconds, connections=plan.connections
    )
    product = targets[0].label
    return {
        "summary": {label: http.summarise(runs) for label, runs in samples.items()},
        "ratios": {
            f"{product}/{label}": http.pair_ratios(samples[product], runs)
            for label, runs in samples.items()
            if label != product
        },
    }


def workers_section(plan: Plan, work: Path) -> dict[str, Any]:
    product = Server("scheduler-w2", scheduler(workers=2), scheduler_env(work / "w2.db"))
    asgi_noop = Server(
        "asgi-noop-w2", hypercorn("bench.apps.asgi_noop:app", workers=2), health_path="/"
    )
    servers = [product, asgi_noop]
    try:
        _started(servers, work)
        job_id = httpx.post(product.url + "/api/jobs", json=e2e.ZERO_WORK_JOB).json()["id"]
        targets = [
            http.Target("scheduler -w 2", product, f"/api?id={job_id}"),
            http.Target("asgi-noop -w 2", asgi_noop, f"/api?id={job_id}"),
        ]
        return {"GET /api?id=": _scenario(targets, plan)}
    finally:
        for server in servers:
            server.stop()


def e2e_section(plan: Plan, work: Path) -> dict[str, Any]:
    # The same concurrency as arq's worker gets below.
    env = scheduler_env(work / "e2e.db", SCHEDULER_CONCURRENCY=str(plan.connections))
    product = Server("scheduler-e2e", scheduler(), env)
    try:
        product.start(work)
        ours = e2e.scheduler_jobs_per_s(product.url, plan.seconds, plan.connections)
    finally:
        product.stop()
    try:
        # arq runs the same number of jobs, capped to keep the run short.
        count = min(ours["jobs"], plan.e2e_jobs)
        theirs = asyncio.run(e2e.arq_jobs_per_s(count, plan.connections))
    except Exception as error:  # Redis may be down on a developer's machine
        theirs = {"error": f"{type(error).__name__}: {error}"}
    ratio = ours["jobs_per_s"] / theirs["jobs_per_s"] if "jobs_per_s" in theirs else None
    return {"scheduler": ours, "arq": theirs, "ratio": ratio}


def fanout_section(plan: Plan, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for size in plan.fanout_sizes:
        row = {}
        for kind, server in (
            (
                "scheduler",
                Server(
                    f"scheduler-sse-{size}", scheduler(), scheduler_env(work / f"sse-{size}.db")
                ),
            ),
            ("quart-sse", Server(f"quart-sse-{size}", hypercorn("bench.apps.quart_sse:app"))),
            ("asgi-sse", Server(f"asgi-sse-{size}", hypercorn("bench.apps.asgi_sse:app"))),
        ):
            try:
                server.start(work)
                row[kind] = fanout.run_fanout(
                    server,
                    kind="scheduler" if kind == "scheduler" else "reference",
                    subscribers=size,
                    triggers=plan.fanout_triggers,
                    client_processes=1 if size <= 1000 else 2,
                )
            finally:
                server.stop()
        results[str(size)] = row
    return results


def estimates_section(plan: Plan, work: Path) -> dict[str, Any]:
    product = Server(
        "scheduler-estimates",
        scheduler(),
        scheduler_env(work / "estimates.db", SCHEDULER_CONCURRENCY="2"),
    )
    try:
        product.start(work)
        return asyncio.run(
            estimate_error.estimate_error(
                product.url, jobs=plan.estimate_jobs, mean_s=plan.estimate_mean_s
            )
        )
    finally:
        product.stop()


if __name__ == "__main__":
    sys.exit(main())
