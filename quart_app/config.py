"""Settings, read once from ``SCHEDULER_*`` environment variables in ``create_app``."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "SCHEDULER_"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
# Longer durations overflow date arithmetic; no setting needs them.
MAX_DURATION_S = 10 * 365 * 86400.0
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service, with its default and its unit in the name."""

    concurrency: int = 4
    default_max_attempts: int = 3
    default_timeout_s: float = 3600.0
    lease_s: float = 30.0
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    max_interruptions: int = 3
    max_streams: int = 10_000
    poll_interval_s: float = 1.0
    progress_interval_s: float = 0.5
    proxy_hops: int = 0
    retention_s: float = 7 * 86400.0
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 300.0
    shutdown_grace_s: float = 30.0
    simulated_seconds: tuple[float, float] = (5.0, 30.0)
    sse_heartbeat_s: float = 15.0
    sse_retry_ms: int = 3000
    sse_send_timeout_s: float = 30.0
    store_url: str = "sqlite:///scheduler.db"
    task_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        low, high = self.simulated_seconds
        _check(
            "simulated_seconds", self.simulated_seconds, 0 <= low <= high, "MIN,MAX with MIN <= MAX"
        )
        for name in ("concurrency", "default_max_attempts", "max_body_bytes", "max_streams"):
            _check(name, getattr(self, name), getattr(self, name) >= 1, "1 or more")
        for name in ("max_interruptions", "proxy_hops", "sse_retry_ms"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, "0 or more")
        for name in ("default_timeout_s", "sse_heartbeat_s", "sse_send_timeout_s"):
            _check(name, getattr(self, name), getattr(self, name) > 0, "more than 0 seconds")
        for name in ("retry_base_delay_s", "shutdown_grace_s"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, "0 seconds or more")
        for name in ("poll_interval_s", "progress_interval_s"):
            # Shorter intervals turn idle polling into a busy loop.
            _check(name, getattr(self, name), getattr(self, name) >= 0.01, "at least 10ms")
        _check("lease_s", self.lease_s, self.lease_s >= 1, "at least 1 second")
        _check("retention_s", self.retention_s, self.retention_s >= 1, "at least 1 second")
        _check(
            "retry_max_delay_s",
            self.retry_max_delay_s,
            self.retry_max_delay_s >= self.retry_base_delay_s,
            "at least SCHEDULER_RETRY_BASE_DELAY",
        )

    @property
    def renew_interval_s(self) -> float:
        """How often a worker renews its leases and looks for cancellation requests."""
        return min(self.lease_s / 3, 1.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``SCHEDULER_*`` variables; raise ``ConfigError`` on bad values."""
        known = {f"{ENV_PREFIX}{suffix}" for suffix in _ENV_FIELDS}
        unknown = sorted(
            name for name in environ if name.startswith(ENV_PREFIX) and name not in known
        )
        if unknown:
            raise ConfigError(
                f"unknown setting {', '.join(unknown)}: check the spelling; "
                f"known settings are {', '.join(sorted(known))}"
            )

        values: dict[str, Any] = {}
        for suffix, (field_name, parse) in _ENV_FIELDS.items():
            name = f"{ENV_PREFIX}{suffix}"
            if name not in environ:
                continue
            try:
                values[field_name] = parse(environ[name])
            except ValueError as error:
                raise ConfigError(f"{name}={environ[name]!r} is invalid: {error}") from error

        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)


def _check(field_name: str, value: Any, valid: bool, expected: str) -> None:
    if valid:
        return
    env_name = _ENV_NAMES.get(field_name, field_name)
    raise ConfigError(f"{env_name}={value!r} is invalid: expected {expected}")


def parse_duration_s(text: str) -> float:
    """Parse ``30``, ``1.5s``, ``500ms``, ``10m``, ``2h`` or ``7d`` into seconds."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError("expected a duration such as 30, 30s, 500ms, 10m, 2h or 7d")
    value = float(match.group(1)) * _DURATION_UNITS_S[match.group(2) or "s"]
    if not math.isfinite(value) or value > MAX_DURATION_S:
        raise ValueError("expected a duration of at most 10 years")
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("expected a whole number such as 4") from None


def _parse_range_s(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError("expected MIN,MAX in seconds, for example 5,30")
    low, high = (parse_duration_s(part) for part in parts)
    if low > high:
        raise ValueError("expected MIN,MAX with MIN <= MAX, for example 5,30")
    return low, high


def _parse_modules(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


# Environment suffix -> (Settings field, parser). Durations accept unit suffixes.
_ENV_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "CONCURRENCY": ("concurrency", _parse_int),
    "LEASE": ("lease_s", parse_duration_s),
    "LOG_LEVEL": ("log_level", _parse_log_level),
    "MAX_ATTEMPTS": ("default_max_attempts", _parse_int),
    "MAX_BODY_BYTES": ("max_body_bytes", _parse_int),
    "MAX_INTERRUPTIONS": ("max_interruptions", _parse_int),
    "MAX_STREAMS": ("max_streams", _parse_int),
    "POLL_INTERVAL": ("poll_interval_s", parse_duration_s),
    "PROGRESS_INTERVAL": ("progress_interval_s", parse_duration_s),
    "PROXY_HOPS": ("proxy_hops", _parse_int),
    "RETENTION": ("retention_s", parse_duration_s),
    "RETRY_BASE_DELAY": ("retry_base_delay_s", parse_duration_s),
    "RETRY_MAX_DELAY": ("retry_max_delay_s", parse_duration_s),
    "SHUTDOWN_GRACE": ("shutdown_grace_s", parse_duration_s),
    "SIMULATED_SECONDS": ("simulated_seconds", _parse_range_s),
    "SSE_HEARTBEAT": ("sse_heartbeat_s", parse_duration_s),
    "SSE_RETRY": ("sse_retry_ms", lambda text: round(parse_duration_s(text) * 1000)),
    "SSE_SEND_TIMEOUT": ("sse_send_timeout_s", parse_duration_s),
    "STORE": ("store_url", str),
    "TASKS": ("task_modules", _parse_modules),
    "TIMEOUT": ("default_timeout_s", parse_duration_s),
}

# Settings field -> environment variable, for messages about values set either way.
_ENV_NAMES = {
    field_name: f"{ENV_PREFIX}{suffix}" for suffix, (field_name, _) in _ENV_FIELDS.items()
}
