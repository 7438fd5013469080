from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import Settings, create_app
from quart_app.scheduler import Scheduler

from .helpers import ServerProcess, serving

# Short intervals keep the suite fast; they are test settings, not recommendations.
FAST_SETTINGS: dict[str, Any] = {
    "concurrency": 2,
    "lease_s": 2.0,
    "poll_interval_s": 0.05,
    "progress_interval_s": 0.05,
    "retry_base_delay_s": 0.05,
    "retry_max_delay_s": 0.2,
    "shutdown_grace_s": 2.0,
    "simulated_seconds": (0.2, 0.4),
}

FAST_ENV = {
    "SCHEDULER_CONCURRENCY": "2",
    "SCHEDULER_LEASE": "2",
    "SCHEDULER_POLL_INTERVAL": "0.05",
    "SCHEDULER_PROGRESS_INTERVAL": "0.05",
    "SCHEDULER_RETRY_BASE_DELAY": "0.05",
    "SCHEDULER_SHUTDOWN_GRACE": "5",
    "SCHEDULER_SIMULATED_SECONDS": "0.2,0.4",
}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's SCHEDULER_* variables out of every test."""
    for name in list(os.environ):
        if name.startswith("SCHEDULER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values = {**FAST_SETTINGS, "store_url": f"sqlite:///{tmp_path / 'jobs.db'}", **overrides}
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Quart]:
    """The app with its startup and shutdown hooks run around the test."""
    application = create_app(settings)
    async with serving(application):
        yield application


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


@pytest.fixture
def scheduler(app: Quart) -> Scheduler:
    current: Scheduler = app.extensions["scheduler"]
    return current


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real servers on loopback; every one is killed by its id after the test."""
    servers: list[ServerProcess] = []

    def factory(workers: int = 1, **env: str) -> ServerProcess:
        full_env = {
            **FAST_ENV,
            "SCHEDULER_STORE": f"sqlite:///{tmp_path / 'server.db'}",
            **env,
        }
        server = ServerProcess(full_env, tmp_path / f"server-{len(servers)}.log", workers=workers)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()
