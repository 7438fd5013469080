"""The job resource API: submit, read, list, fetch results and cancel."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from quart import Blueprint, Response, request, url_for
from quart_schema import document_querystring, document_request, document_response

from ..errors import BadRequestError, ConflictError
from ..jobs import JobStatus
from .common import (
    accepted_headers,
    idempotency_key,
    job_body,
    json_response,
    read_submission,
    require_accepting,
    scheduler,
)
from .schemas import ErrorBody, JobBody, JobListQuery, JobPage, ResultBody, SubmitRequest

blueprint = Blueprint("jobs", __name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@blueprint.post("/api/jobs")
@document_request(SubmitRequest)
@document_response(JobBody, 202)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 409)
@document_response(ErrorBody, 422)
async def submit() -> Response:
    """Submit a job. A repeated ``Idempotency-Key`` returns the first job instead of a new one."""
    require_accepting()
    submission = await read_submission(body_required=True)
    assert submission is not None
    job, created = await scheduler().submit(submission, idempotency_key())

    location = url_for("jobs.job", job_id=job.id)
    headers = accepted_headers(scheduler(), job, location, replayed=not created)
    return json_response(job_body(job), 202, headers)


@blueprint.get("/api/jobs")
@document_querystring(JobListQuery)
@document_response(JobPage, 200)
@document_response(ErrorBody, 400)
async def jobs() -> Response:
    """List jobs, newest first, optionally filtered by status and task."""
    statuses = parse_statuses(request.args.get("status"))
    task = request.args.get("task") or None
    limit = _parse_limit(request.args.get("limit"))
    before_seq = _decode_cursor(request.args.get("cursor"))

    # Read the event log position first: a client that resumes /api/events from it receives
    # every change made after this list was read.
    last_event_id = await scheduler().store.last_event_id()
    page = await scheduler().store.jobs(
        statuses=statuses, task=task, before_seq=before_seq, limit=limit + 1
    )
    has_more = len(page) > limit
    page = page[:limit]
    next_cursor = _encode_cursor(page[-1].seq) if has_more and page[-1].seq else None
    next_url = None
    if next_cursor is not None:
        query = {
            key: request.args[key] for key in ("status", "task", "limit") if key in request.args
        }
        query["cursor"] = next_cursor
        next_url = f"{url_for('jobs.jobs')}?{urlencode(query)}"
    body = {
        "jobs": [job_body(job) for job in page],
        "next_cursor": next_cursor,
        "next_url": next_url,
        "last_event_id": last_event_id,
    }
    return json_response(body)


@blueprint.get("/api/jobs/<job_id>")
@document_response(JobBody, 200)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 410)
async def job(job_id: str) -> Response:
    """Return a job with its status, progress and completion estimate."""
    found = await scheduler().get(job_id)
    return json_response(job_body(found))


@blueprint.get("/api/jobs/<job_id>/result")
@document_response(ResultBody, 200)
@document_response(JobBody, 202)
@document_response(ErrorBody, 409)
async def result(job_id: str) -> Response:
    """Return a succeeded job's result; 202 while pending; 409 if it failed or was cancelled."""
    found = await scheduler().get(job_id)
    if found.status is JobStatus.SUCCEEDED:
        return json_response({"id": found.id, "status": found.status.value, "result": found.result})
    if found.is_terminal:
        detail = f": {found.error.type}: {found.error.message}" if found.error else ""
        verb = "was cancelled" if found.status is JobStatus.CANCELLED else found.status.value
        error = ConflictError(f"job {found.id} has no result because it {verb}{detail}")
        body = error.body() | {"status": found.status.value}
        if found.error is not None:
            body["error"] = found.error.to_dict()
        return json_response(body, 409)
    estimate = scheduler().estimate(found)
    headers = {"Retry-After": str(estimate.retry_after_s)} if estimate else {}
    return json_response(job_body(found), 202, headers)


@blueprint.delete("/api/jobs/<job_id>")
@document_response(JobBody, 200)
@document_response(JobBody, 202)
@document_response(ErrorBody, 409)
async def cancel(job_id: str) -> Response:
    """Cancel a job: 200 when it is cancelled at once, 202 while its running work stops."""
    cancelled = await scheduler().cancel(job_id)
    status = 200 if cancelled.is_terminal else 202
    return json_response(job_body(cancelled), status)


def parse_statuses(text: str | None) -> frozenset[JobStatus] | None:
    if not text:
        return None
    valid = {status.value for status in JobStatus}
    names = {part.strip() for part in text.split(",") if part.strip()}
    if not names:
        # Only separators, such as "status=,": no filter, as with an empty value.
        return None
    unknown = sorted(names - valid)
    if unknown:
        raise BadRequestError(
            f"invalid status filter {', '.join(unknown)!r}: use any of {', '.join(sorted(valid))}, "
            "separated by commas"
        )
    return frozenset(JobStatus(name) for name in names)


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE_SIZE
    if not _is_number(text, max_digits=3) or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise BadRequestError(
            f"invalid limit {text[:20]!r}: use a whole number from 1 to {MAX_PAGE_SIZE}"
        )
    return int(text)


def _is_number(text: str, *, max_digits: int) -> bool:
    # isdigit() alone accepts characters such as "²" that int() rejects.
    return text.isascii() and text.isdigit() and len(text) <= max_digits


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(text: str | None) -> int | None:
    if not text:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    prefix, _, number = decoded.partition(":")
    if prefix != "seq" or not _is_number(number, max_digits=18):
        raise BadRequestError(
            f"invalid cursor {text[:60]!r}: pass the previous page's next_cursor unchanged"
        )
    return int(number)
