"""Server-sent event streams and the WebSocket feed, over a real Hypercorn process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import ServerSentEvent, aconnect_sse

from .helpers import ServerProcess, wait_for

MakeServer = Callable[..., ServerProcess]
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
async def server(make_server: MakeServer) -> ServerProcess:
    started = make_server(SCHEDULER_SSE_HEARTBEAT="0.3", SCHEDULER_MAX_STREAMS="20")
    started.start()
    await started.wait_ready()
    return started


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        yield http


async def submit(client: httpx.AsyncClient, seconds: float, **extra: Any) -> str:
    body = {"task": "sleep", "params": {"seconds": seconds}, **extra}
    response = await client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def collect(
    client: httpx.AsyncClient,
    url: str,
    *,
    until: Callable[[ServerSentEvent], bool] | None = None,
    headers: dict[str, str] | None = None,
    limit: int = 1000,
) -> list[ServerSentEvent]:
    """Read events until the stream ends, ``until`` matches, or ``limit`` events arrived."""
    events: list[ServerSentEvent] = []
    async with aconnect_sse(client, "GET", url, headers=dict(headers or {})) as source:
        assert source.response.status_code == 200
        async for event in source.aiter_sse():
            if event.event == "message" and not event.data:
                # httpx-sse reports the bare "retry:" block; EventSource dispatches nothing.
                continue
            events.append(event)
            if (until and until(event)) or len(events) >= limit:
                break
    return events


def job_of(event: ServerSentEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.data)
    return data


async def open_streams(client: httpx.AsyncClient) -> int:
    count: int = (await client.get("/healthz")).json()["streams"]
    return count


async def test_job_stream_follows_whole_life(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 0.6, delay=0.3)

    events = await collect(client, f"/api/jobs/{job_id}/events")

    kinds = [event.event for event in events]
    assert kinds[0] == "snapshot"
    assert job_of(events[0])["status"] == "queued"
    assert "started" in kinds
    assert "progress" in kinds
    assert kinds[-1] == "succeeded"
    ids = [int(event.id) for event in events]
    assert ids == sorted(ids)
    assert len(set(ids[1:])) == len(ids) - 1
    final = job_of(events[-1])
    assert final["status"] == "succeeded"
    assert final["links"]["self"] == f"/api/jobs/{job_id}"
    progress = [job_of(event)["progress"] for event in events if event.event == "progress"]
    assert progress == sorted(progress)


async def test_job_stream_headers_sent_at_once(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 30)

    async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 3000"


async def test_job_stream_sends_heartbeats_without_ids(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 30, delay=60)

    async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        lines: list[str] = []
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith(":"):
                break

    assert lines[-1] == ": ping"
    ids = [line for line in lines if line.startswith("id:")]
    assert len(ids) == 1  # the snapshot only


async def test_job_stream_resumes_without_gaps(client: httpx.AsyncClient) -> None:
    # The delay lets the stream open before the job starts, so it receives "started".
    job_id = await submit(client, 1.0, delay=0.3)
    first = await collect(
        client, f"/api/jobs/{job_id}/events", until=lambda event: event.event == "started"
    )

    resumed = await collect(
        client, f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": first[-1].id}
    )

    full = await collect(client, f"/api/jobs/{job_id}/events?last_event_id=0")
    snapshot_id = int(first[0].id)
    seen = [int(event.id) for event in first[1:] + resumed]
    assert seen == [int(event.id) for event in full if int(event.id) > snapshot_id]
    assert resumed[-1].event == "succeeded"


async def test_job_stream_after_terminal_is_204(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 0)
    events = await collect(client, f"/api/jobs/{job_id}/events?last_event_id=0")
    assert events[-1].event == "succeeded"

    response = await client.get(
        f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": events[-1].id}
    )

    assert response.status_code == 204


async def test_job_stream_of_finished_job_ends_after_snapshot(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 0)
    await collect(client, f"/api/jobs/{job_id}/events?last_event_id=0")

    events = await collect(client, f"/api/jobs/{job_id}/events")

    assert [event.event for event in events] == ["snapshot"]
    assert job_of(events[0])["status"] == "succeeded"


@pytest.mark.parametrize(
    ("path", "headers", "status", "fragment"),
    [
        ("/api/jobs/AAAAAAAAAAAAAAAAAAAAAA/events", {}, 404, "not found"),
        ("/api/jobs/nonsense/events", {}, 404, "not found"),
        ("/api/jobs/{job}/events", {"Last-Event-ID": "abc"}, 400, "invalid Last-Event-ID"),
        ("/api/jobs/{job}/events?last_event_id=-1", {}, 400, "invalid Last-Event-ID"),
        ("/api/events", {"Last-Event-ID": "9" * 20}, 400, "invalid Last-Event-ID"),
        ("/api/events?status=done", {}, 400, "invalid status filter"),
    ],
)
async def test_stream_bad_request_is_json(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, fragment: str
) -> None:
    job_id = await submit(client, 1, delay=60)

    response = await client.get(path.format(job=job_id), headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert fragment in response.json()["message"]


async def test_all_events_filters_by_task_and_status(client: httpx.AsyncClient) -> None:
    async def read() -> list[ServerSentEvent]:
        return await collect(
            client, "/api/events?status=succeeded", until=lambda event: event.event == "succeeded"
        )

    reader = asyncio.create_task(read())
    await wait_for(lambda: open_streams_positive(client))
    job_id = await submit(client, 0.1)
    events = await asyncio.wait_for(reader, 10)

    assert [event.event for event in events] == ["succeeded"]
    assert job_of(events[0])["id"] == job_id


async def open_streams_positive(client: httpx.AsyncClient) -> bool:
    return await open_streams(client) > 0


async def test_all_events_resume_from_list_position(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/api/jobs")).json()
    job_id = await submit(client, 0)
    await collect(client, f"/api/jobs/{job_id}/events?last_event_id=0")

    events = await collect(
        client,
        f"/api/events?last_event_id={listed['last_event_id']}",
        until=lambda event: event.event == "succeeded",
    )

    assert [event.event for event in events] == ["queued", "started", "succeeded"] or (
        "progress" in [event.event for event in events]
    )
    assert {job_of(event)["id"] for event in events} == {job_id}


async def test_streams_are_released_after_clients_drop(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 60)
    for _ in range(3):
        clients = [httpx.AsyncClient(base_url=str(client.base_url)) for _ in range(15)]
        contexts = [http.stream("GET", f"/api/jobs/{job_id}/events") for http in clients]
        responses = [await context.__aenter__() for context in contexts]
        assert all(response.status_code == 200 for response in responses)
        assert await open_streams(client) == 15
        for context, http in zip(contexts, clients, strict=True):
            await context.__aexit__(None, None, None)
            await http.aclose()

        async def released() -> bool:
            return await open_streams(client) == 0

        await wait_for(released)


async def test_stream_cap_answers_503(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 60)
    holders = [httpx.AsyncClient(base_url=str(client.base_url)) for _ in range(20)]
    contexts = [http.stream("GET", f"/api/jobs/{job_id}/events") for http in holders]
    try:
        for context in contexts:
            assert (await context.__aenter__()).status_code == 200

        response = await client.get(f"/api/jobs/{job_id}/events")

        assert response.status_code == 503
        assert "SCHEDULER_MAX_STREAMS" in response.json()["message"]
        assert int(response.headers["retry-after"]) >= 1
    finally:
        for context, http in zip(contexts, holders, strict=True):
            await context.__aexit__(None, None, None)
            await http.aclose()


async def test_stream_on_other_worker_sees_events(make_server: MakeServer) -> None:
    server = make_server(workers=2)
    server.start()
    await server.wait_ready()
    readers: list[tuple[httpx.AsyncClient, asyncio.Task[list[ServerSentEvent]]]] = []
    streams_by_worker: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        # Open streams on new connections until both workers hold one, so that one of
        # them follows a job that the other runs.
        while len([count for count in streams_by_worker.values() if count]) < 2:
            assert len(readers) < 30, f"streams never reached both workers: {streams_by_worker}"
            http = httpx.AsyncClient(base_url=server.base_url, timeout=10)
            reader = collect(http, "/api/events", until=lambda event: event.event == "succeeded")
            readers.append((http, asyncio.create_task(reader)))
            for _ in range(10):
                async with httpx.AsyncClient(base_url=server.base_url) as probe:
                    health = (await probe.get("/healthz")).json()
                streams_by_worker[health["worker"]["id"]] = health["streams"]
        job_id = await submit(client, 0.1)

    for http, task in readers:
        events = await asyncio.wait_for(task, 15)
        assert job_of(events[-1])["id"] == job_id
        ids = [int(event.id) for event in events]
        assert ids == sorted(ids)
        await http.aclose()


async def test_shutdown_closes_streams_promptly(make_server: MakeServer) -> None:
    server = make_server(SCHEDULER_SSE_HEARTBEAT="60")
    server.start()
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        job_id = await submit(client, 1, delay=600)
        async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 3000"
            started = time.monotonic()
            server.signal(15)
            async for _ in lines:
                pass
            ended_s = time.monotonic() - started

    assert server.terminate() == 0
    # Hypercorn's graceful timeout is 3 s; a stream that held the shutdown would last that long.
    assert ended_s < 2.5


async def test_websocket_subscribe_submit_and_cancel(server: ServerProcess) -> None:
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "ping", "ref": 1}))
        assert json.loads(await socket.recv()) == {"type": "pong", "ref": 1}

        await socket.send(
            json.dumps({"type": "submit", "job": {"task": "sleep", "params": {"seconds": 0.3}}})
        )
        submitted = json.loads(await socket.recv())
        assert submitted["type"] == "submitted"
        job_id = submitted["job"]["id"]

        kinds = []
        while "succeeded" not in kinds:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert frame["type"] == "event"
            assert frame["job"]["id"] == job_id
            kinds.append(frame["event"])
        assert "started" in kinds

        await socket.send(json.dumps({"type": "cancel", "id": job_id, "ref": "c"}))
        error = json.loads(await socket.recv())
        assert error["type"] == "error"
        assert error["status"] == 409
        assert error["ref"] == "c"


async def test_websocket_subscribe_sends_snapshot(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    job_id = await submit(client, 60)
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "subscribe", "jobs": [job_id]}))
        snapshot = json.loads(await socket.recv())
        assert snapshot["event"] == "snapshot"
        assert snapshot["job"]["id"] == job_id
        reply = json.loads(await socket.recv())
        assert reply == {"type": "subscribed", "all": False, "jobs": [job_id]}

        await socket.send(json.dumps({"type": "cancel", "id": job_id}))
        frames: list[dict[str, Any]] = []
        while not any(frame.get("event") == "cancelled" for frame in frames):
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
        assert "cancel" in {frame["type"] for frame in frames}
        assert all(frame["job"]["id"] == job_id for frame in frames)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ("not json", "malformed JSON"),
        ("[1]", "expected a JSON object"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ('{"type": "subscribe"}', 'expected "jobs"'),
        ('{"type": "subscribe", "jobs": ["x"]}', "invalid job id 'x'"),
        ('{"type": "subscribe", "jobs": ["AAAAAAAAAAAAAAAAAAAAAA"]}', "not found"),
        ('{"type": "submit", "job": {"task": "nope"}}', "unknown task 'nope'"),
        ('{"type": "submit"}', 'needs "job"'),
        ('{"type": "cancel", "id": 5}', "invalid job id '5'"),
    ],
)
async def test_websocket_bad_message_gets_error_frame(
    server: ServerProcess, message: str, fragment: str
) -> None:
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as socket:
        await socket.send(message)
        error = json.loads(await socket.recv())
        assert error["type"] == "error"
        assert fragment in error["message"]

        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}


async def test_websocket_disconnects_release_streams(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    url = server.base_url.replace("http://", "ws://") + "/ws"
    for _ in range(10):
        socket = await websockets.connect(url)
        await socket.send(json.dumps({"type": "subscribe", "all": True}))
        # Drop the TCP connection without a closing handshake or reading any reply.
        socket.transport.abort()

    async def released() -> bool:
        return await open_streams(client) == 0

    await wait_for(released)


async def test_stream_resume_past_log_starts_over(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 1, delay=60)

    events = await collect(
        client, f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "999999"}, limit=1
    )

    assert events[0].event == "snapshot"
    assert job_of(events[0])["id"] == job_id


async def test_stream_heartbeat_despite_filtered_events(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/api/events?task=primes") as response:
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        for _ in range(6):
            # Each job sends several events that this filter drops.
            await submit(client, 0)
        started = time.monotonic()
        async for line in lines:
            if line.startswith(":"):
                break
        waited_s = time.monotonic() - started

    # The heartbeat is due 0.3 s after the stream opened, whatever was filtered out.
    assert waited_s < 5


async def test_stream_head_request_returns_headers(client: httpx.AsyncClient) -> None:
    response = await client.head("/api/events")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert await open_streams(client) == 0


async def test_websocket_deeply_nested_message_gets_error(server: ServerProcess) -> None:
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as socket:
        await socket.send("[" * 20000)
        error = json.loads(await socket.recv())
        assert error["type"] == "error"
        assert "nested too deeply" in error["message"]

        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}


async def test_all_events_past_log_sends_snapshots(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, 1, delay=60)

    events = await collect(client, "/api/events", headers={"Last-Event-ID": "999999"}, limit=1)

    assert events[0].event == "snapshot"
    assert job_of(events[0])["id"] == job_id
