"""End to end over real HTTP against ``python -m quart_app`` running Hypercorn."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from quart_app.jobs import Job, JobStatus
from quart_app.storage.sqlite import SQLiteStore
from quart_app.supervisor import RESTART_REASON

from .helpers import REPO_ROOT, ServerProcess, listening_socket, max_overlap, wait_for

MakeServer = Callable[..., ServerProcess]


async def started(make_server: MakeServer, workers: int = 1, **env: str) -> ServerProcess:
    server = make_server(workers, **env)
    server.start()
    await server.wait_ready()
    return server


async def wait_status(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    """Poll the job until it reaches ``status``; return its representation."""

    async def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = (await client.get(f"/api/jobs/{job_id}")).json()
        return job if job["status"] == status else None

    return await wait_for(reached, timeout_s=30)


async def poll_until_done(
    client: httpx.AsyncClient, status_url: str, timeout_s: float = 30
) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def done() -> bool:
        response = await client.get(status_url)
        responses.append(response)
        return response.status_code == 200

    await wait_for(done, timeout_s=timeout_s, interval_s=0.1)
    return responses


async def test_contract_end_to_end(make_server: MakeServer) -> None:
    server = await started(make_server, SCHEDULER_SIMULATED_SECONDS="1,1")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        submitted = await client.post("/api")
        assert submitted.status_code == 202
        body = submitted.json()
        assert body["status_url"] == f"{server.base_url}/api?id={body['id']}"
        assert submitted.headers["location"] == body["status_url"]

        responses = await poll_until_done(client, body["status_url"])

    pending = [response for response in responses if response.status_code == 202]
    assert len(pending) >= 3
    remaining = [response.json()["seconds_to_completion"] for response in pending]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[0] > remaining[-1]
    assert all(0 <= value <= 1.5 for value in remaining)
    assert all(1 <= int(response.headers["retry-after"]) <= 60 for response in pending)
    assert responses[-1].json()["message"] == "Job is done!"


async def test_server_restart_after_kill_completes_every_job(make_server: MakeServer) -> None:
    server = await started(make_server, SCHEDULER_CONCURRENCY="2")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        ids = []
        for _ in range(4):
            response = await client.post(
                "/api/jobs", json={"task": "sleep", "params": {"seconds": 1}}
            )
            ids.append(response.json()["id"])

        async def two_running() -> bool:
            statuses = [
                (await client.get(f"/api/jobs/{job_id}")).json()["status"] for job_id in ids
            ]
            return statuses.count("running") == 2

        await wait_for(two_running)
        server.kill()
        server.start()
        await server.wait_ready()

        async def all_done() -> list[dict[str, Any]] | None:
            jobs = [(await client.get(f"/api/jobs/{job_id}")).json() for job_id in ids]
            return jobs if all(job["status"] == "succeeded" for job in jobs) else None

        jobs = await wait_for(all_done, timeout_s=30)

    assert sorted(job["interruptions"] for job in jobs) == [0, 0, 1, 1]
    assert all(job["attempt"] == 1 for job in jobs)
    assert "reclaimed stuck job" in server.log()
    assert RESTART_REASON in server.log()


async def test_server_sigterm_finishes_running_job(make_server: MakeServer) -> None:
    server = await started(make_server, SCHEDULER_SHUTDOWN_GRACE="10")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post(
            "/api/jobs", json={"task": "sleep", "params": {"seconds": 0.5}}
        )
        job_id = response.json()["id"]

        await wait_status(client, job_id, "running")
        assert server.terminate() == 0

    store = SQLiteStore(server.env["SCHEDULER_STORE"].removeprefix("sqlite:///"))
    await store.open()
    try:
        job = await store.job(job_id)
    finally:
        await store.close()
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert "stopped supervisor" in server.log()


async def test_server_sigterm_requeues_long_job(make_server: MakeServer) -> None:
    server = await started(make_server, SCHEDULER_SHUTDOWN_GRACE="0.2")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 2}})
        job_id = response.json()["id"]

        await wait_status(client, job_id, "running")
        assert server.terminate() == 0
        server.start()
        await server.wait_ready()

        async def done() -> dict[str, Any] | None:
            job = (await client.get(f"/api/jobs/{job_id}")).json()
            return job if job["status"] == "succeeded" else None

        job = await wait_for(done, timeout_s=20)

    assert job["interruptions"] == 0
    assert "requeued job" in server.log()


async def test_server_two_workers_share_jobs(make_server: MakeServer) -> None:
    server = await started(make_server, workers=2, SCHEDULER_CONCURRENCY="2")
    ids: list[str] = []
    # A new connection per request lets the kernel hand each one to either worker.
    for _ in range(20):
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            response = await client.post("/api", json={"task": "sleep", "params": {"seconds": 0.2}})
            job_id = response.json()["id"]
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            status = await client.get(f"/api?id={job_id}")
        assert status.status_code in (200, 202), status.text
        ids.append(job_id)

    async with httpx.AsyncClient(base_url=server.base_url) as client:

        async def all_done() -> bool:
            for job_id in ids:
                if (await client.get(f"/api?id={job_id}")).status_code != 200:
                    return False
            return True

        await wait_for(all_done, timeout_s=30)

    store = SQLiteStore(server.env["SCHEDULER_STORE"].removeprefix("sqlite:///"))
    await store.open()
    try:
        started_events = [
            event for event in await store.events_after(0, 10_000) if event.kind == "started"
        ]
        jobs_by_id = {job_id: await store.job(job_id) for job_id in ids}
    finally:
        await store.close()
    # Each job was claimed once, and no worker ran more than its two slots at a time.
    assert sorted(event.job_id for event in started_events) == sorted(ids)
    by_worker: dict[str, list[Job]] = {}
    for event in started_events:
        job = jobs_by_id[event.job_id]
        assert job is not None
        by_worker.setdefault(event.data["worker"], []).append(job)
    assert all(max_overlap(worker_jobs) <= 2 for worker_jobs in by_worker.values())
    assert all(job and job.status is JobStatus.SUCCEEDED for job in jobs_by_id.values())


async def test_server_root_path_prefixes_status_url(make_server: MakeServer) -> None:
    server = make_server()
    server.root_path = "/scheduler"
    server.start()
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/scheduler/api")
        body = response.json()
        assert body["status_url"] == f"{server.base_url}/scheduler/api?id={body['id']}"
        status = await client.get(body["status_url"])
        assert status.status_code == 202


async def test_server_trusts_forwarded_headers(make_server: MakeServer) -> None:
    server = await started(make_server, SCHEDULER_PROXY_HOPS="1")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "jobs.example.org"}
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api", headers=headers)

    body = response.json()
    assert body["status_url"] == f"https://jobs.example.org/api?id={body['id']}"


async def test_server_ignores_forwarded_headers_by_default(make_server: MakeServer) -> None:
    server = await started(make_server)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "jobs.example.org"}
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api", headers=headers)

    assert response.json()["status_url"].startswith(server.base_url)


async def test_server_job_that_kills_its_process_fails(make_server: MakeServer) -> None:
    server = await started(
        make_server, SCHEDULER_TASKS="tests.tasks_for_tests", SCHEDULER_MAX_INTERRUPTIONS="1"
    )
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api/jobs", json={"task": "test.kill_server"})
        job_id = response.json()["id"]
        for _ in range(2):
            server.process.wait(timeout=20)  # type: ignore[union-attr]
            server.start()
            await server.wait_ready()

        async def failed() -> dict[str, Any] | None:
            job = (await client.get(f"/api/jobs/{job_id}")).json()
            return job if job["status"] == "failed" else None

        job = await wait_for(failed, timeout_s=20)

    assert job["error"]["type"] == "InterruptedError"
    assert "SCHEDULER_MAX_INTERRUPTIONS=1" in job["error"]["message"]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SCHEDULER_CONCURRENCY": "many"}, "SCHEDULER_CONCURRENCY='many' is invalid"),
        ({"SCHEDULER_CONCURENCY": "2"}, "unknown setting SCHEDULER_CONCURENCY"),
        ({"SCHEDULER_TASKS": "no_such_module"}, "'no_such_module', which cannot be imported"),
        ({"SCHEDULER_STORE": "postgres://db/jobs"}, "unsupported scheme 'postgres'"),
        ({"SCHEDULER_STORE": "sqlite:///missing/jobs.db"}, "does not exist or is not writable"),
        ({"SCHEDULER_TIMEOUT": "0"}, "SCHEDULER_TIMEOUT=0.0 is invalid"),
    ],
)
def test_server_bad_settings_stop_startup(
    tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quart_app", "--bind", "127.0.0.1:0"],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("workers", "primes_status"), [(None, "failed"), ("0", "succeeded")])
async def test_hypercorn_serves_module_level_app(
    tmp_path: Path, workers: str | None, primes_status: str
) -> None:
    # The hypercorn command runs a daemonic worker unless given --workers 0, and a daemonic
    # process may not start the child processes of CPU-bound tasks.
    sock = listening_socket()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "SCHEDULER_STORE": f"sqlite:///{tmp_path / 'h.db'}",
        "SCHEDULER_SIMULATED_SECONDS": "0.1,0.2",
        "SCHEDULER_MAX_ATTEMPTS": "1",
    }
    options = ["--workers", workers] if workers is not None else []
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hypercorn", "quart_app:app", "--bind", f"fd://{sock.fileno()}"),
        *options,
        env=env,
        cwd=tmp_path,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sock.getsockname()[1]}"
        ) as client:

            async def healthy() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, timeout_s=30)
            response = await client.post("/api")
            assert response.status_code == 202

            primes = await client.post(
                "/api/jobs", json={"task": "primes", "params": {"below": 1000}}
            )
            job_url = primes.headers["Location"]

            async def finished() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(job_url)).json()
                return body if body["status"] in ("succeeded", "failed") else None

            job = await wait_for(finished, timeout_s=30)
            assert job["status"] == primes_status
            if primes_status == "failed":
                assert "hypercorn --workers 0" in job["error"]["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        sock.close()


async def test_server_replaces_killed_worker(make_server: MakeServer) -> None:
    server = await started(make_server, workers=2, SCHEDULER_CONCURRENCY="1")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 1}})
        job_id = response.json()["id"]

        async def running_on() -> str | None:
            job = (await client.get(f"/api/jobs/{job_id}")).json()
            return job["worker"] if job["status"] == "running" else None

        worker = await wait_for(running_on)
        os.kill(int(worker.split(":")[1]), signal.SIGKILL)

        async def done() -> dict[str, Any] | None:
            try:
                job = (await client.get(f"/api/jobs/{job_id}")).json()
            except httpx.TransportError:
                # A kept-alive connection to the killed worker fails once; retry.
                return None
            return job if job["status"] == "succeeded" else None

        job = await wait_for(done, timeout_s=30)

    assert job["interruptions"] == 1
    assert "starting a replacement" in server.log()
    assert server.process is not None and server.process.poll() is None
    assert server.terminate() == 0


async def test_server_exits_when_address_taken(tmp_path: Path) -> None:
    occupied = listening_socket()
    port = occupied.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "SCHEDULER_STORE": f"sqlite:///{tmp_path / 'occupied.db'}",
    }
    try:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "quart_app", "--bind", f"127.0.0.1:{port}"),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        occupied.close()

    assert process.returncode == 1
    assert f"failed to listen on 127.0.0.1:{port}" in stderr.decode()
