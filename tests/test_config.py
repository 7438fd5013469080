from __future__ import annotations

import pytest

from quart_app.config import Settings, parse_duration_s
from quart_app.errors import ConfigError


def test_settings_from_env_reads_every_kind() -> None:
    settings = Settings.from_env(
        {
            "SCHEDULER_CONCURRENCY": "8",
            "SCHEDULER_RETENTION": "2d",
            "SCHEDULER_SHUTDOWN_GRACE": "45s",
            "SCHEDULER_SIMULATED_SECONDS": "1,3",
            "SCHEDULER_STORE": "memory://",
            "SCHEDULER_TASKS": "app.tasks, other.tasks",
            "SCHEDULER_LOG_LEVEL": "debug",
            "PATH": "/usr/bin",
        }
    )

    assert settings.concurrency == 8
    assert settings.retention_s == 2 * 86400
    assert settings.shutdown_grace_s == 45
    assert settings.simulated_seconds == (1, 3)
    assert settings.store_url == "memory://"
    assert settings.task_modules == ("app.tasks", "other.tasks")
    assert settings.log_level == "DEBUG"


def test_settings_defaults_match_contract() -> None:
    settings = Settings.from_env({})

    assert settings.simulated_seconds == (5, 30)
    assert settings.retention_s == 7 * 86400
    assert settings.store_url == "sqlite:///scheduler.db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SCHEDULER_CONCURRENCY": "lots"},
            "SCHEDULER_CONCURRENCY='lots' is invalid: expected a whole",
        ),
        ({"SCHEDULER_CONCURRENCY": "0"}, "SCHEDULER_CONCURRENCY=0 is invalid: expected 1 or more"),
        ({"SCHEDULER_TIMEOUT": "0"}, "SCHEDULER_TIMEOUT=0.0 is invalid: expected more than 0"),
        ({"SCHEDULER_POLL_INTERVAL": "0"}, "SCHEDULER_POLL_INTERVAL=0.0 is invalid: expected at"),
        ({"SCHEDULER_RETENTION": "0"}, "SCHEDULER_RETENTION=0.0 is invalid: expected at least 1"),
        ({"SCHEDULER_PROXY_HOPS": "-1"}, "SCHEDULER_PROXY_HOPS=-1 is invalid: expected 0 or more"),
        ({"SCHEDULER_LEASE": "99999999999d"}, "expected a duration of at most 10 years"),
        (
            {"SCHEDULER_RETENTION": "a week"},
            "SCHEDULER_RETENTION='a week' is invalid: expected a dur",
        ),
        ({"SCHEDULER_SIMULATED_SECONDS": "30"}, "expected MIN,MAX in seconds"),
        ({"SCHEDULER_SIMULATED_SECONDS": "30,5"}, "MIN <= MAX"),
        ({"SCHEDULER_LOG_LEVEL": "loud"}, "expected one of DEBUG"),
        ({"SCHEDULER_LEASE": "0.5"}, "SCHEDULER_LEASE=0.5 is invalid"),
        ({"SCHEDULER_CONCURENCY": "2"}, "unknown setting SCHEDULER_CONCURENCY"),
    ],
)
def test_settings_from_env_rejects_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("1.5s", 1.5), ("500ms", 0.5), ("10m", 600), ("2h", 7200), ("7d", 604800)],
)
def test_parse_duration_units(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds
