"""The job resource API through the app: submission, reads, lists, results and cancellation."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_app.jobs import JobStatus
from quart_app.scheduler import Scheduler, Submission

from . import tasks_for_tests  # noqa: F401  (registers the test tasks)
from .helpers import wait_for


async def submit(client: Client, body: Any, **kwargs: Any) -> tuple[int, Any]:
    response = await client.post("/api/jobs", json=body, **kwargs)
    return response.status_code, await response.get_json()


async def wait_status(scheduler: Scheduler, job_id: str, status: JobStatus) -> None:
    async def reached() -> bool:
        return (await scheduler.get(job_id)).status is status

    await wait_for(reached)


async def test_submit_returns_job_and_location(client: Client) -> None:
    body = {
        "task": "sleep",
        "params": {"seconds": 5},
        "priority": 3,
        "timeout": 9,
        "max_attempts": 2,
    }
    response = await client.post("/api/jobs", json=body)

    assert response.status_code == 202
    job = await response.get_json()
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert job["task"] == "sleep"
    assert job["params"] == {"seconds": 5.0}
    assert job["priority"] == 3
    assert job["timeout"] == 9
    assert job["max_attempts"] == 2
    assert job["attempt"] == 1
    assert job["status"] in {"queued", "running"}
    assert job["links"]["events"] == f"/api/jobs/{job['id']}/events"
    assert job["seconds_to_completion"] > 0


async def test_get_job_returns_representation(client: Client) -> None:
    _, created = await submit(client, {"task": "sleep", "params": {"seconds": 0.05}})

    response = await client.get(f"/api/jobs/{created['id']}")

    assert response.status_code == 200
    job = await response.get_json()
    for field in (
        "id",
        "task",
        "params",
        "status",
        "progress",
        "progress_message",
        "priority",
        "attempt",
        "max_attempts",
        "created_at",
        "started_at",
        "finished_at",
        "estimated_time_completion",
        "seconds_to_completion",
        "error",
        "links",
    ):
        assert field in job


async def test_get_unknown_job_is_404(client: Client) -> None:
    response = await client.get("/api/jobs/AAAAAAAAAAAAAAAAAAAAAA")

    assert response.status_code == 404
    assert "not found" in (await response.get_json())["message"]


async def test_get_purged_job_is_410(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))
    await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)
    from quart_app.jobs import utcnow

    await scheduler.store.purge(utcnow(), utcnow().replace(year=2000))

    response = await client.get(f"/api/jobs/{job.id}")
    assert response.status_code == 410
    assert "purged" in (await response.get_json())["message"]
    contract = await client.get(f"/api?id={job.id}")
    assert contract.status_code == 400
    assert await contract.get_json() == {"message": "Invalid id!"}


async def test_result_pending_then_available(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0.3}))

    pending = await client.get(f"/api/jobs/{job.id}/result")
    assert pending.status_code == 202
    assert "Retry-After" in pending.headers

    await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)
    done = await client.get(f"/api/jobs/{job.id}/result")
    assert done.status_code == 200
    body = await done.get_json()
    assert body["status"] == "succeeded"
    assert body["result"]["slept_s"] >= 0.3


async def test_result_of_failed_job_is_409(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(
        Submission("test.hang", {"seconds": 5}, timeout_s=0.05, max_attempts=1)
    )
    await wait_status(scheduler, job.id, JobStatus.FAILED)

    response = await client.get(f"/api/jobs/{job.id}/result")

    assert response.status_code == 409
    body = await response.get_json()
    assert body["error"]["type"] == "TimeoutError"
    assert "failed" in body["message"]


async def test_cancel_queued_job_is_immediate(client: Client) -> None:
    _, job = await submit(client, {"task": "sleep", "params": {"seconds": 1}, "delay": 60})

    response = await client.delete(f"/api/jobs/{job['id']}")

    assert response.status_code == 200
    assert (await response.get_json())["status"] == "cancelled"


async def test_cancel_running_job_stops_its_work(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 30}))
    await wait_status(scheduler, job.id, JobStatus.RUNNING)

    response = await client.delete(f"/api/jobs/{job.id}")

    assert response.status_code == 202
    assert (await response.get_json())["cancel_requested"] is True
    await wait_status(scheduler, job.id, JobStatus.CANCELLED)
    final = await scheduler.get(job.id)
    assert final.status_reason == "cancelled on request"
    assert final.attempt == 1


async def test_cancel_finished_job_is_409(client: Client, scheduler: Scheduler) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))
    await wait_status(scheduler, job.id, JobStatus.SUCCEEDED)

    response = await client.delete(f"/api/jobs/{job.id}")

    assert response.status_code == 409
    assert "has already succeeded" in (await response.get_json())["message"]


async def test_idempotency_key_returns_same_job(client: Client) -> None:
    body = {"task": "sleep", "params": {"seconds": 0.01}}
    headers = {"Idempotency-Key": "order-42"}

    first = await client.post("/api/jobs", json=body, headers=headers)
    second = await client.post("/api/jobs", json=body, headers=headers)

    assert (await first.get_json())["id"] == (await second.get_json())["id"]
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_idempotency_key_with_other_body_is_409(client: Client) -> None:
    headers = {"Idempotency-Key": "order-43"}
    await client.post(
        "/api/jobs", json={"task": "sleep", "params": {"seconds": 1}}, headers=headers
    )

    response = await client.post(
        "/api/jobs", json={"task": "sleep", "params": {"seconds": 2}}, headers=headers
    )

    assert response.status_code == 409
    assert "order-43" in (await response.get_json())["message"]


async def test_list_jobs_newest_first_with_cursor(client: Client) -> None:
    ids = []
    for _ in range(5):
        _, job = await submit(client, {"task": "sleep", "params": {"seconds": 1}, "delay": 60})
        ids.append(job["id"])

    first = await (await client.get("/api/jobs?limit=3")).get_json()
    second = await (await client.get(first["next_url"])).get_json()

    assert [job["id"] for job in first["jobs"]] == ids[::-1][:3]
    assert [job["id"] for job in second["jobs"]] == ids[::-1][3:]
    assert second["next_cursor"] is None


async def test_list_jobs_filters_by_status_and_task(client: Client, scheduler: Scheduler) -> None:
    queued, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}, delay_s=60))
    cancelled, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}, delay_s=60))
    await scheduler.cancel(cancelled.id)

    body = await (await client.get("/api/jobs?status=cancelled&task=sleep")).get_json()
    assert [job["id"] for job in body["jobs"]] == [cancelled.id]
    body = await (await client.get("/api/jobs?status=queued,running")).get_json()
    assert [job["id"] for job in body["jobs"]] == [queued.id]
    body = await (await client.get("/api/jobs?task=primes")).get_json()
    assert body["jobs"] == []


async def test_tasks_lists_builtin_tasks(client: Client) -> None:
    body = await (await client.get("/api/tasks")).get_json()

    tasks = {task["name"]: task for task in body["tasks"]}
    assert tasks["sleep"]["runs_in"] == "async"
    assert tasks["sleep"]["params_schema"]["required"] == ["seconds"]
    assert tasks["primes"]["runs_in"] == "process"
    assert tasks["primes"]["estimate_basis"] == "default"


async def test_openapi_describes_the_api(client: Client) -> None:
    document = await (await client.get("/openapi.json")).get_json()

    assert {"/api", "/api/jobs", "/api/jobs/{job_id}", "/api/tasks"} <= set(document["paths"])
    docs = await client.get("/docs")
    assert docs.status_code == 200
    asset = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200


# Bad input: each case names the value and the fix, returns JSON, and stores nothing.


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{bad", 400, "malformed JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b'{"task": "nope"}', 422, "unknown task 'nope'"),
        (b'{"params": {}}', 422, "task: Field required"),
        (b'{"task": "sleep"}', 422, "params.seconds: Field required"),
        (b'{"task": "sleep", "params": {"seconds": -1}}', 422, "params.seconds"),
        (b'{"task": "sleep", "params": {"seconds": 1}, "prio": 1}', 422, "prio: unknown field"),
        (b'{"task": "sleep", "params": {"seconds": 1}, "priority": "high"}', 422, "priority"),
        (b'{"task": "sleep", "params": {"seconds": 1}, "timeout": 0}', 422, "timeout"),
        (b'{"task": "sleep", "params": {"seconds": 1}, "max_attempts": 0}', 422, "max_attempts"),
        (b'{"task": "sleep", "params": {"seconds": 1}, "delay": -5}', 422, "delay"),
        (b'{"task": "sleep", "params": [1]}', 422, "params"),
        (b"", 400, "missing JSON body"),
        (b'{"task": "sleep", "priority": 1' + b"0" * 5000 + b"}", 400, "malformed JSON"),
        (b'{"task": "sleep", "params": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, "malformed JSON"),
        (b'{"task": "sleep", "params": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", 400, "nested more"),
        (b'{"task": "sleep", "params": {"seconds": NaN}}', 400, "NaN is not a JSON number"),
        (b'{"task": "sleep", "params": {"seconds": 1}, "delay": Infinity}', 400, "Infinity"),
        (b"null", 400, "got a JSON null"),
        (b'{"task": "sleep", "params": {"seconds": 7200}}', 422, "longer than the job's timeout"),
    ],
)
async def test_submit_bad_input_is_rejected(
    client: Client, scheduler: Scheduler, body: bytes, status: int, fragment: str
) -> None:
    response = await client.post(
        "/api/jobs", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == status
    payload = await response.get_json()
    assert fragment in payload["message"]
    assert await scheduler.store.jobs() == []


async def test_submit_invalid_params_lists_field_errors(client: Client) -> None:
    status, body = await submit(client, {"task": "sleep", "params": {"seconds": "soon"}})

    assert status == 422
    assert body["errors"][0]["field"] == "params.seconds"


async def test_contract_bad_body_is_rejected(client: Client, scheduler: Scheduler) -> None:
    response = await client.post(
        "/api", data=b"{oops", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert "malformed JSON" in (await response.get_json())["message"]
    assert await scheduler.store.jobs() == []


async def test_oversized_body_is_413(client: Client, scheduler: Scheduler) -> None:
    big = b'{"task": "sleep", "params": {"seconds": 1, "pad": "' + b"x" * 2_000_000 + b'"}}'

    response = await client.post(
        "/api/jobs", data=big, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert "SCHEDULER_MAX_BODY_BYTES" in (await response.get_json())["message"]
    assert await scheduler.store.jobs() == []


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("status=done", "invalid status filter 'done'"),
        ("limit=0", "invalid limit '0'"),
        ("limit=abc", "invalid limit 'abc'"),
        ("cursor=zzz", "invalid cursor 'zzz'"),
        ("limit=%C2%B2", "invalid limit '²'"),
        ("limit=" + "1" * 5000, "invalid limit '11111111111111111111'"),
        ("cursor=c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ", "invalid cursor"),
    ],
)
async def test_list_bad_query_is_400(client: Client, query: str, fragment: str) -> None:
    response = await client.get(f"/api/jobs?{query}")

    assert response.status_code == 400
    assert fragment in (await response.get_json())["message"]


async def test_bad_idempotency_key_is_400(client: Client, scheduler: Scheduler) -> None:
    response = await client.post(
        "/api/jobs",
        json={"task": "sleep", "params": {"seconds": 1}},
        headers={"Idempotency-Key": "k" * 300},
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in (await response.get_json())["message"]
    assert await scheduler.store.jobs() == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("PUT", "/api/jobs", 405), ("PATCH", "/api", 405)],
)
async def test_unknown_routes_answer_json(
    client: Client, method: str, path: str, status: int
) -> None:
    response = await client.open(path, method=method, json=None)

    assert response.status_code == status
    assert response.content_type == "application/json"
    assert (await response.get_json())["message"]


async def test_list_next_url_keeps_only_known_filters(client: Client) -> None:
    for _ in range(2):
        await submit(client, {"task": "sleep", "params": {"seconds": 1}, "delay": 60})

    response = await client.get("/api/jobs?limit=1&endpoint=x&_external=1&task=sleep")

    body = await response.get_json()
    assert response.status_code == 200
    assert body["next_url"].startswith("/api/jobs?task=sleep&limit=1&cursor=")


async def test_idempotency_key_replays_simulated_job(client: Client) -> None:
    headers = {"Idempotency-Key": "simulated-1"}

    first = await client.post("/api", headers=headers)
    second = await client.post("/api", headers=headers)

    assert second.status_code == 202
    assert (await first.get_json())["id"] == (await second.get_json())["id"]


async def test_idempotency_key_treats_defaults_alike(client: Client) -> None:
    headers = {"Idempotency-Key": "defaults-1"}
    body = {"task": "sleep", "params": {"seconds": 1}}

    first = await client.post("/api/jobs", json=body, headers=headers)
    second = await client.post(
        "/api/jobs", json={**body, "delay": 0, "priority": 0}, headers=headers
    )

    assert second.status_code == 202
    assert (await first.get_json())["id"] == (await second.get_json())["id"]


@pytest.mark.parametrize("host", ["a b", "x:abc", "bad/host", ""])
async def test_bad_host_header_is_400(client: Client, scheduler: Scheduler, host: str) -> None:
    response = await client.post("/api", headers={"Host": host})

    assert response.status_code == 400
    assert "Host header" in (await response.get_json())["message"]
    assert await scheduler.store.jobs() == []
