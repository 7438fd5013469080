"""Request and response models: they validate input and describe the API in /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..jobs import JobStatus

MAX_DELAY_S = 30 * 86400.0
MAX_TIMEOUT_S = 7 * 86400.0


class SubmitRequest(BaseModel):
    """A job submission; only ``task`` is required."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="A name from GET /api/tasks.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's parameters.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first; ties run FIFO.")
    timeout: float | None = Field(
        None,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="Seconds a run may take before it fails.",
    )
    max_attempts: int | None = Field(
        None, ge=1, le=100, description="Runs allowed for failures, the first one included."
    )
    delay: float = Field(
        0.0,
        ge=0,
        le=MAX_DELAY_S,
        allow_inf_nan=False,
        description="Seconds to wait before running.",
    )


class Accepted(BaseModel):
    id: str
    status_url: str


class FieldProblem(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    message: str
    errors: list[FieldProblem] | None = None


class InProgress(BaseModel):
    message: Literal["Job is still in progress!"]
    estimated_time_completion: str
    seconds_to_completion: float
    status: JobStatus
    progress: float


class Finished(BaseModel):
    message: str
    status: JobStatus
    result_url: str | None = None


class JobErrorBody(BaseModel):
    type: str
    message: str


class JobLinks(BaseModel):
    self: str
    result: str
    events: str
    status: str


class JobBody(BaseModel):
    id: str
    task: str
    params: dict[str, Any]
    status: JobStatus
    status_reason: str | None
    progress: float
    progress_message: str | None
    priority: int
    attempt: int
    max_attempts: int
    interruptions: int
    timeout: float | None
    cancel_requested: bool
    worker: str | None = Field(description="The worker running the job (host:pid:token).")
    created_at: str
    scheduled_at: str
    started_at: str | None
    finished_at: str | None
    estimated_time_completion: str | None
    seconds_to_completion: float
    estimate_basis: str | None
    error: JobErrorBody | None
    links: JobLinks


class JobPage(BaseModel):
    jobs: list[JobBody]
    next_cursor: str | None
    next_url: str | None
    last_event_id: int = Field(description="Resume GET /api/events from here to see later changes.")


class EventStreamQuery(BaseModel):
    last_event_id: str | None = Field(
        None, description="Resume after this event id, for clients that cannot set Last-Event-ID."
    )
    task: str | None = Field(None, description="Only events of this task (GET /api/events).")
    status: str | None = Field(None, description="Comma-separated statuses (GET /api/events).")


class JobListQuery(BaseModel):
    status: str | None = Field(None, description="Comma-separated statuses to include.")
    task: str | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, description="next_cursor from the previous page.")


class ResultBody(BaseModel):
    id: str
    status: JobStatus
    result: Any


class TaskBody(BaseModel):
    name: str
    description: str
    runs_in: str
    params_schema: dict[str, Any]
    estimated_duration_s: float | None
    estimate_basis: str


class TaskList(BaseModel):
    tasks: list[TaskBody]
