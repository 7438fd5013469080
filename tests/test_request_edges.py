"""Requests at the edges of the ASGI fast paths: Host headers, root paths, schemes and bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_app import Settings, create_app, fastpath, stream_fastpath, submit_fastpath
from quart_app.api.common import is_valid_host
from quart_app.api.jobs import parse_statuses
from quart_app.scheduler import Scheduler

from .helpers import serving

BAD_HOSTS = ["a..b", "x" * 64 + ".example", "my_host:5000", "localhost:080", "localhost:70000"]
GOOD_HOSTS = ["localhost", "localhost:5000", "example.com.", "127.0.0.1:80", "[::1]:5000"]


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_host_accepted(host: str) -> None:
    assert is_valid_host(host)


@pytest.mark.parametrize("host", [*BAD_HOSTS, "", "a b", "[::1", "localhost:"])
def test_host_rejected(host: str) -> None:
    assert not is_valid_host(host)


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api?id=x"), ("POST", "/api"), ("GET", "/api/events")]
)
async def test_bad_host_gets_json_400(
    client: Client, scheduler: Scheduler, host: str, method: str, path: str
) -> None:
    response = await client.open(path, method=method, headers={"Host": host}, json=None)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert "Host header" in (await response.get_json())["message"]
    assert await scheduler.store.jobs() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api?id=x"), ("POST", "/api"), ("POST", "/api/jobs"), ("GET", "/api/events")],
)
async def test_path_outside_root_path_is_404(
    client: Client, scheduler: Scheduler, method: str, path: str
) -> None:
    response = await client.open(path, method=method, root_path="/prefix", json=None)

    assert response.status_code == 404
    assert await scheduler.store.jobs() == []


async def test_non_ascii_root_path_submits_once(client: Client, scheduler: Scheduler) -> None:
    response = await client.post("/日本/api", root_path="/日本")

    assert response.status_code == 202
    assert (await response.get_json())["status_url"].endswith(
        "/日本/api?id=" + (await response.get_json())["id"]
    )
    assert len(await scheduler.store.jobs()) == 1


@pytest.mark.parametrize("scheme", ["HTTPS", "javascript", "", "wss"])
async def test_forwarded_scheme_matches_route(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    # Schemes other than http and https go to the Quart route, whatever it makes of them.
    app = create_app(make_settings(proxy_hops=1))
    forwarded = {"X-Forwarded-Proto": scheme, "X-Forwarded-Host": "example.com:443"}
    async with serving(app):
        client = app.test_client()
        fast = await client.post("/api", headers=forwarded)
        with monkeypatch.context() as patch:
            # Behind the proxy fix, every fast path passes the request on.
            for module in (fastpath, stream_fastpath, submit_fastpath):
                patch.setattr(module, "route_path", lambda scope, method: None)
            slow = await client.post("/api", headers=forwarded)

    assert fast.status_code == slow.status_code
    fast_body = await fast.get_json()
    slow_body = await slow.get_json()
    if fast.status_code == 202:
        assert (
            fast_body["status_url"].rsplit("=", 1)[0] == slow_body["status_url"].rsplit("=", 1)[0]
        )
    else:
        assert fast_body == slow_body


def test_status_filter_of_separators_is_no_filter() -> None:
    assert parse_statuses(",") is None
    assert parse_statuses(" , ") is None


class Recorder:
    """An inner ASGI app that records what reaches it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.messages = [await receive()]


def submit_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/api/jobs",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
    }


async def test_body_cut_by_disconnect_reaches_nobody(scheduler: Scheduler) -> None:
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"task": "sl', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []
    inner = Recorder()

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await submit_fastpath.SubmitPath(inner, scheduler, str)(submit_scope(), receive, send)

    assert inner.messages is None
    assert sent == []


async def test_slow_body_goes_to_route(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submit_fastpath, "FAST_BODY_TIMEOUT_S", 0.05)
    first: dict[str, Any] = {"type": "http.request", "body": b'{"task": "sl', "more_body": True}
    stalled = asyncio.Event()
    calls = 0
    inner = Recorder()

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return first
        await stalled.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("the fast path must not answer a slow upload")

    await submit_fastpath.SubmitPath(inner, scheduler, str)(submit_scope(), receive, send)

    assert inner.messages == [{"type": "http.request", "body": first["body"], "more_body": True}]


async def test_doubled_slash_is_json_404(client: Client) -> None:
    response = await client.get("/api/jobs//result")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
