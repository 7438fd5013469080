"""The original polling contract, ``POST /api`` and ``GET /api?id=``, through the app."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_app.scheduler import Scheduler, Submission

from . import tasks_for_tests  # noqa: F401  (registers the test tasks)
from .helpers import wait_for


async def poll(client: Client, job_id: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/api?id={job_id}")
    return response.status_code, await response.get_json()


async def test_submit_without_body_returns_id_and_status_url(client: Client) -> None:
    response = await client.post("/api")

    assert response.status_code == 202
    body = await response.get_json()
    assert set(body) == {"id", "status_url"}
    assert len(body["id"]) == 22
    assert body["status_url"] == f"http://localhost/api?id={body['id']}"
    assert response.headers["Location"] == body["status_url"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_submit_without_body_runs_simulated_sleep(
    client: Client, scheduler: Scheduler
) -> None:
    response = await client.post("/api")
    job = await scheduler.get((await response.get_json())["id"])

    assert job.task == "sleep"
    assert 0.2 <= job.params["seconds"] <= 0.4


async def test_submit_with_body_uses_given_task(client: Client, scheduler: Scheduler) -> None:
    response = await client.post("/api", json={"task": "sleep", "params": {"seconds": 0.01}})

    assert response.status_code == 202
    job = await scheduler.get((await response.get_json())["id"])
    assert job.params == {"seconds": 0.01}


async def test_status_in_progress_has_estimate(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 30}))

    status, body = await poll(client, job.id)

    assert status == 202
    assert body["message"] == "Job is still in progress!"
    assert 0 <= body["seconds_to_completion"] <= 30
    completion = datetime.fromisoformat(body["estimated_time_completion"])
    assert completion.utcoffset() == timedelta(0)
    response = await client.get(f"/api?id={job.id}")
    assert 1 <= int(response.headers["Retry-After"]) <= 30


async def test_status_done_after_job_succeeds(client: Client) -> None:
    response = await client.post("/api", json={"task": "sleep", "params": {"seconds": 0.05}})
    job_id = (await response.get_json())["id"]

    async def done() -> dict[str, Any] | None:
        status, body = await poll(client, job_id)
        return body if status == 200 else None

    body = await wait_for(done)
    assert body["message"] == "Job is done!"
    assert body["status"] == "succeeded"
    assert body["result_url"] == f"/api/jobs/{job_id}/result"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?id=",
        "?id=short",
        "?id=" + "A" * 23,
        "?id=" + "A" * 5000,
        "?id=AAAAAAAAAAAAAAAAAAAAA%21",
    ],
)
async def test_status_bad_id_is_invalid(client: Client, query: str) -> None:
    response = await client.get(f"/api{query}")

    assert response.status_code == 400
    assert await response.get_json() == {"message": "Invalid id!"}


async def test_status_unknown_id_is_invalid(client: Client) -> None:
    response = await client.get("/api?id=AAAAAAAAAAAAAAAAAAAAAA")

    assert response.status_code == 400
    assert await response.get_json() == {"message": "Invalid id!"}


async def test_status_failed_job_says_failed(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(
        Submission("test.hang", {"seconds": 5}, timeout_s=0.05, max_attempts=1)
    )

    async def finished() -> dict[str, Any] | None:
        status, body = await poll(client, job.id)
        return body if status == 200 else None

    body = await wait_for(finished)
    assert body["message"] == "Job failed!"
    assert body["status"] == "failed"
    assert body["error"]["type"] == "TimeoutError"


async def test_status_cancelled_job_says_cancelled(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}, delay_s=60))
    await scheduler.cancel(job.id)

    status, body = await poll(client, job.id)

    assert status == 200
    assert body == {"message": "Job was cancelled!", "status": "cancelled"}


async def test_status_url_honours_root_path(client: Client) -> None:
    response = await client.post("/scheduler/api", root_path="/scheduler")

    body = await response.get_json()
    assert body["status_url"] == f"http://localhost/scheduler/api?id={body['id']}"
