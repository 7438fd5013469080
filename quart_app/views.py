"""Response bodies for job reads, shared by the Quart routes and the ASGI fast path.

Both paths build their responses here, so that the shape of the ``/api`` contract and of
the job resource is defined once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .jobs import JobStatus, isoformat

if TYPE_CHECKING:
    from .estimates import Estimate
    from .jobs import Job

INVALID_ID = {"message": "Invalid id!"}

_FINISHED_MESSAGES = {
    JobStatus.SUCCEEDED: "Job is done!",
    JobStatus.FAILED: "Job failed!",
    JobStatus.CANCELLED: "Job was cancelled!",
}


def has_fixed_views(job: Job) -> bool:
    """Tell whether the job's views depend on nothing but its stored row and the root path.

    A finished job has no estimate, so its status and its resource stay the same until the
    row changes. A queued or running job's estimate moves with the clock.
    """
    return job.is_terminal


def job_links(job_id: str, root_path: str) -> dict[str, str]:
    """Return root-relative links to the job's resources."""
    return {
        "self": f"{root_path}/api/jobs/{job_id}",
        "result": f"{root_path}/api/jobs/{job_id}/result",
        "events": f"{root_path}/api/jobs/{job_id}/events",
        "status": f"{root_path}/api?id={job_id}",
    }


def status_view(
    job: Job | None, estimate: Estimate | None, root_path: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Return the status code, body and headers of ``GET /api?id=`` for ``job``."""
    if job is None:
        return 400, dict(INVALID_ID), {}
    if job.status in _FINISHED_MESSAGES:
        body: dict[str, Any] = {
            "message": _FINISHED_MESSAGES[job.status],
            "status": job.status.value,
        }
        if job.status is JobStatus.SUCCEEDED:
            body["result_url"] = f"{root_path}/api/jobs/{job.id}/result"
        elif job.error is not None:
            body["error"] = job.error.to_dict()
        return 200, body, {}

    assert estimate is not None, "a pending job always has an estimate"
    body = {
        "message": "Job is still in progress!",
        "estimated_time_completion": isoformat(estimate.completion_at),
        "seconds_to_completion": estimate.seconds_to_completion,
        "status": job.status.value,
        "progress": job.progress,
    }
    return 202, body, {"Retry-After": str(estimate.retry_after_s)}
