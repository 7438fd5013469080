"""The job record, its states and the rules between them."""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# 16 random bytes give 128 bits, encoded as 22 URL-safe characters.
JOB_ID_BYTES = 16
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
UNSUCCESSFUL_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def new_job_id() -> str:
    return secrets.token_urlsafe(JOB_ID_BYTES)


def is_job_id(value: str) -> bool:
    return JOB_ID_RE.match(value) is not None


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime | None) -> str | None:
    """Format a point in time as ISO-8601 UTC with millisecond precision and a ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the exception type and its message."""

    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class Job:
    """One submission of a task, as stored. State changes return a new ``Job``."""

    id: str
    task: str
    params: dict[str, Any]
    status: JobStatus
    priority: int
    attempt: int
    max_attempts: int
    timeout_s: float | None
    created_at: datetime
    scheduled_at: datetime
    expected_duration_s: float | None = None
    interruptions: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float = 0.0
    progress_message: str | None = None
    status_reason: str | None = None
    result: Any = None
    error: JobError | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    idempotency_key: str | None = None
    request_hash: str | None = None
    seq: int | None = field(default=None, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def evolve(self, **changes: Any) -> Job:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the public fields, without the estimate or links that the API adds."""
        return {
            "id": self.id,
            "task": self.task,
            "params": self.params,
            "status": self.status.value,
            "status_reason": self.status_reason,
            # Floats throughout, so that a value read back from the store prints the same.
            "progress": float(self.progress),
            "progress_message": self.progress_message,
            "priority": self.priority,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "interruptions": self.interruptions,
            "timeout": float(self.timeout_s) if self.timeout_s is not None else None,
            "cancel_requested": self.cancel_requested,
            "worker": self.lease_owner,
            "created_at": isoformat(self.created_at),
            "scheduled_at": isoformat(self.scheduled_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "error": self.error.to_dict() if self.error else None,
        }
