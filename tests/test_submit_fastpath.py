"""The ASGI fast path for submissions returns what the Quart routes behind it return."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.scheduler import Scheduler

# Fields that differ between two submissions of the same job.
PER_JOB = ("id", "created_at", "scheduled_at", "links", "estimated_time_completion")


def quart_only(app: Quart) -> None:
    """Remove every ASGI fast path in front of the Quart app."""
    inner: Any = app.asgi_app
    while hasattr(inner, "app"):
        inner = inner.app
    app.asgi_app = inner  # type: ignore[method-assign]


async def submit_both(
    app: Quart, client: Client, path: str, **request: Any
) -> list[tuple[int, dict[str, str], dict[str, Any]]]:
    results = []
    for fast in (True, False):
        if not fast:
            quart_only(app)
        response = await client.post(path, **request)
        body = json.loads(await response.get_data())
        headers = {
            name: response.headers[name]
            for name in ("Content-Type", "Cache-Control", "Location", "Idempotent-Replayed")
            if name in response.headers
        }
        results.append((response.status_code, headers, body))
    return results


async def test_contract_submit_matches_route(app: Quart, client: Client) -> None:
    fast, slow = await submit_both(app, client, "/api")

    assert fast[0] == slow[0] == 202
    assert set(fast[2]) == set(slow[2]) == {"id", "status_url"}
    assert fast[2]["status_url"] == f"http://localhost/api?id={fast[2]['id']}"
    assert fast[1]["Location"] == fast[2]["status_url"]
    assert slow[1]["Location"] == slow[2]["status_url"]
    assert {**fast[1], "Location": ""} == {**slow[1], "Location": ""}


async def test_jobs_submit_matches_route(app: Quart, client: Client) -> None:
    job = {"task": "sleep", "params": {"seconds": 0.2}, "priority": 3}

    fast, slow = await submit_both(app, client, "/api/jobs", json=job)

    assert fast[0] == slow[0] == 202
    assert fast[1]["Location"] == f"/api/jobs/{fast[2]['id']}"
    assert slow[1]["Location"] == f"/api/jobs/{slow[2]['id']}"
    assert fast[2]["links"]["self"] == f"/api/jobs/{fast[2]['id']}"
    for key in PER_JOB:
        fast[2].pop(key)
        slow[2].pop(key)
    fast[2].pop("seconds_to_completion")
    slow[2].pop("seconds_to_completion")
    assert fast[2] == slow[2]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", "http://localhost"),
        ("LocalHost:80", "http://localhost"),
        ("example.com:8080", "http://example.com:8080"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("[::1]:5000", None),
        ("xn--bad:5000", None),
    ],
)
async def test_contract_status_url_matches_route_for_host(
    app: Quart, client: Client, host: str, expected: str | None
) -> None:
    fast, slow = await submit_both(app, client, "/api", headers={"Host": host})

    assert fast[0] == slow[0]
    if fast[0] != 202:
        # A name Quart rejects gets the same JSON error either way.
        assert fast[2] == slow[2]
        return
    fast_base = fast[2]["status_url"].rsplit("/api?id=", 1)[0]
    slow_base = slow[2]["status_url"].rsplit("/api?id=", 1)[0]
    assert fast_base == slow_base
    if expected is not None:
        assert fast_base == expected


@pytest.mark.parametrize("path", ["/api/jobs", "/api"])
async def test_replayed_submission_gets_header(client: Client, path: str) -> None:
    job = {"task": "sleep", "params": {"seconds": 0.2}}
    headers = {"Idempotency-Key": "retry-1"}

    first = await client.post(path, json=job, headers=headers)
    second = await client.post(path, json=job, headers=headers)

    assert first.status_code == second.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (await first.get_json())["id"] == (await second.get_json())["id"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/jobs", b"{not json", 400),
        ("/api/jobs", b"", 400),
        ("/api/jobs", b'{"task": "nope"}', 422),
        ("/api", b"[1, 2]", 400),
    ],
)
async def test_bad_submission_errors_match_route(
    app: Quart, client: Client, scheduler: Scheduler, path: str, body: bytes, status: int
) -> None:
    before = (await scheduler.store.counts())["queued"]

    fast, slow = await submit_both(app, client, path, data=body)

    assert fast == slow
    assert fast[0] == status
    assert "message" in fast[2]
    assert (await scheduler.store.counts())["queued"] == before


async def test_store_failure_is_json_500(
    client: Client, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(scheduler.store, "enqueue", broken)

    response = await client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 0}})

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert (await response.get_json())["message"] == "Internal server error; see the server log."
