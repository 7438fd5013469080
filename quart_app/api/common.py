"""Helpers shared by the API blueprints: reading input and shaping job responses."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import pydantic
from quart import Response, current_app, request

from ..errors import BadRequestError, UnavailableError, ValidationError
from ..scheduler import Scheduler, Submission
from .schemas import SubmitRequest

if TYPE_CHECKING:
    from ..jobs import Job

SUBMIT_EXAMPLE = '{"task": "sleep", "params": {"seconds": 5}}'
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def scheduler() -> Scheduler:
    return cast(Scheduler, current_app.extensions["scheduler"])


async def read_submission(*, body_required: bool) -> Submission | None:
    """Parse the request body into a ``Submission``; ``None`` for an allowed empty body.

    Raise ``BadRequestError`` for malformed JSON and ``ValidationError`` for a body that
    breaks the schema, each naming the offending value.
    """
    raw = await request.get_data(as_text=False)
    if not raw.strip():
        if body_required:
            raise BadRequestError(f"missing JSON body: send a job such as {SUBMIT_EXAMPLE}")
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequestError(
            f"malformed JSON body ({error}): send a JSON object such as {SUBMIT_EXAMPLE}"
        ) from error
    if not isinstance(data, dict):
        raise BadRequestError(
            f"expected a JSON object, got {type(data).__name__}: send {SUBMIT_EXAMPLE}"
        )
    try:
        model = SubmitRequest.model_validate(data)
    except pydantic.ValidationError as error:
        raise body_error(error) from error
    return Submission(
        task=model.task,
        params=model.params,
        priority=model.priority,
        timeout_s=model.timeout,
        max_attempts=model.max_attempts,
        delay_s=model.delay,
    )


def body_error(error: pydantic.ValidationError) -> ValidationError:
    errors = []
    for detail in error.errors():
        field = ".".join(str(part) for part in detail["loc"]) or "body"
        problem = detail["msg"]
        if detail["type"] == "extra_forbidden":
            problem = "unknown field; allowed: task, params, priority, timeout, max_attempts, delay"
        elif "input" in detail and detail["type"] != "missing":
            problem = f"{problem} (got {json.dumps(detail['input'], default=str)[:100]})"
        errors.append({"field": field, "problem": problem})
    summary = "; ".join(f"{item['field']}: {item['problem']}" for item in errors)
    return ValidationError(f"invalid job submission: {summary}", errors=errors)


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise BadRequestError(
            f"invalid Idempotency-Key {key[:50]!r}: send 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} "
            "characters, for example a UUID"
        )
    return key


def require_accepting() -> None:
    if not scheduler().accepting:
        raise UnavailableError("the service is shutting down and accepts no new jobs; retry later")


def job_links(job_id: str) -> dict[str, str]:
    root = request.root_path
    return {
        "self": f"{root}/api/jobs/{job_id}",
        "result": f"{root}/api/jobs/{job_id}/result",
        "events": f"{root}/api/jobs/{job_id}/events",
        "status": f"{root}/api?id={job_id}",
    }


def job_body(job: Job) -> dict[str, Any]:
    body = scheduler().describe(job)
    body["links"] = job_links(job.id)
    return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response: Response = current_app.json.response(body)  # type: ignore[assignment]
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response
