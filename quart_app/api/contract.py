"""The original polling contract: ``POST /api`` submits, ``GET /api?id=`` reports status.

Its response shapes are kept exactly: fields may be added, never renamed or removed. Every
bad or unknown id gets 400 ``Invalid id!``. Finished jobs get 200, so that a client that
polls until it gets 200 stops for failed and cancelled jobs too.
"""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, request, url_for
from quart_schema import document_querystring, document_request, document_response

from ..errors import InvalidIdError
from ..views import status_view
from .common import (
    accepted_headers,
    idempotency_key,
    json_response,
    read_submission,
    require_accepting,
    scheduler,
    simulated_submission,
)
from .schemas import Accepted, ErrorBody, Finished, InProgress, SubmitRequest

blueprint = Blueprint("contract", __name__)


class StatusQuery(BaseModel):
    id: str


@blueprint.post("/api")
@document_request(SubmitRequest)
@document_response(Accepted, 202)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
async def submit() -> Response:
    """Submit a job; with no body, the simulated job (a ``sleep`` of random length)."""
    require_accepting()
    submission = await read_submission(body_required=False)
    if submission is None:
        submission = simulated_submission(scheduler())
    job, created = await scheduler().submit(submission, idempotency_key())

    status_url = url_for("contract.status", id=job.id, _external=True)
    headers = accepted_headers(scheduler(), job, status_url, replayed=not created)
    return json_response({"id": job.id, "status_url": status_url}, 202, headers)


@blueprint.get("/api")
@document_querystring(StatusQuery)
@document_response(InProgress, 202)
@document_response(Finished, 200)
@document_response(ErrorBody, 400)
async def status() -> Response:
    """Report a job's status, with an estimate of its completion while it is pending."""
    job = await scheduler().find(request.args.get("id", ""))
    if job is None:
        raise InvalidIdError()
    status, body, headers = status_view(job, scheduler().estimate(job), request.root_path)
    return json_response(body, status, headers)
