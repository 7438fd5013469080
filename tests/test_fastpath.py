"""The ASGI fast path returns exactly what the Quart routes behind it return."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_app import fastpath
from quart_app.jobs import JobStatus
from quart_app.scheduler import Scheduler, Submission
from quart_app.storage.base import ReadWouldBlockError

from .helpers import wait_for

# Estimates move between two requests, so they are compared apart from the rest.
MOVING = ("seconds_to_completion", "estimated_time_completion")


async def both_paths(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, path: str
) -> tuple[tuple[int, str, dict[str, Any]], tuple[int, str, dict[str, Any]]]:
    """Request ``path`` through the fast path, then from the Quart route alone."""
    fast = await client.get(path)

    with monkeypatch.context() as patch:
        # The fast path passes on every request that it may not serve.
        patch.setattr(fastpath, "route_path", lambda scope, method: None)
        slow = await client.get(path)

    results = []
    for response in (fast, slow):
        body = json.loads(await response.get_data())
        headers = {name: response.headers.get(name) for name in ("Content-Type", "Cache-Control")}
        results.append((response.status_code, json.dumps(headers), body))
    return results[0], results[1]


async def finished_job(scheduler: Scheduler) -> str:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 0}))

    async def done() -> bool:
        return (await scheduler.get(job.id)).status is JobStatus.SUCCEEDED

    await wait_for(done)
    return job.id


@pytest.mark.parametrize("route", ["/api?id={id}", "/api/jobs/{id}"])
async def test_fast_path_matches_route_for_finished_job(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    job_id = await finished_job(scheduler)

    fast, slow = await both_paths(client, scheduler, monkeypatch, route.format(id=job_id))

    assert fast == slow


@pytest.mark.parametrize("route", ["/api?id={id}", "/api/jobs/{id}"])
async def test_fast_path_matches_route_for_queued_job(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    job, _ = await scheduler.submit(Submission("sleep", {"seconds": 1}, delay_s=600))

    fast, slow = await both_paths(client, scheduler, monkeypatch, route.format(id=job.id))

    for key in MOVING:
        assert fast[2].pop(key) is not None
        assert slow[2].pop(key) is not None
    assert fast == slow


@pytest.mark.parametrize(
    "path",
    ["/api?id=AAAAAAAAAAAAAAAAAAAAAA", "/api?id=bad", "/api", "/api/jobs/AAAAAAAAAAAAAAAAAAAAAA"],
)
async def test_fast_path_matches_route_for_bad_ids(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    fast, slow = await both_paths(client, scheduler, monkeypatch, path)

    assert fast == slow


@pytest.mark.parametrize(
    "query",
    [
        "id={id}&id=AAAAAAAAAAAAAAAAAAAAAA",
        "other=1&id={id}",
        "id=AAAAAAAAAAAAAAAAAAAAAA&id={id}",
        "id={id}&",
        "id=%41{tail}",
        "id={id}x",
        "id=",
        "ID={id}",
    ],
)
async def test_fast_path_matches_route_for_query_forms(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    job_id = await finished_job(scheduler)
    path = "/api?" + query.format(id=job_id, tail=job_id[1:])

    fast, slow = await both_paths(client, scheduler, monkeypatch, path)

    assert fast == slow


async def test_fast_path_passes_on_read_that_would_block(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await finished_job(scheduler)
    fast = await client.get(f"/api/jobs/{job_id}")

    def would_block(job_id: str) -> None:
        raise ReadWouldBlockError

    monkeypatch.setattr(scheduler.store, "job_nowait", would_block)
    slow = await client.get(f"/api/jobs/{job_id}")

    assert slow.status_code == fast.status_code
    assert await slow.get_json() == await fast.get_json()


@pytest.mark.parametrize("host", ["bad host", "", "localhost:123456"])
async def test_fast_path_rejects_bad_host_after_good_one(
    client: Client, scheduler: Scheduler, host: str
) -> None:
    job_id = await finished_job(scheduler)
    good = await client.get(f"/api?id={job_id}", headers={"Host": "localhost:5000"})
    assert good.status_code == 200

    bad = await client.get(f"/api?id={job_id}", headers={"Host": host})

    assert bad.status_code == 400
    assert "Host" in (await bad.get_json())["message"]
