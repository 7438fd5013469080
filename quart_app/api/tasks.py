"""Registered tasks and service health."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response

from .common import json_response, scheduler
from .schemas import TaskList

blueprint = Blueprint("tasks", __name__)


@blueprint.get("/api/tasks")
@document_response(TaskList, 200)
async def tasks() -> Response:
    """List the registered tasks with their params schema and current duration estimate."""
    estimator = scheduler().estimator
    bodies = []
    for task in scheduler().registry:
        duration_s: float | None
        duration_s, basis = estimator.typical_duration_s(task.name)
        if task.estimate_s is not None:
            # The duration follows from each job's params, so no single figure applies.
            duration_s, basis = None, "params"
        bodies.append(
            {
                "name": task.name,
                "description": task.description,
                "runs_in": task.kind.value,
                "params_schema": task.params_schema(),
                "estimated_duration_s": duration_s,
                "estimate_basis": basis,
            }
        )
    return json_response({"tasks": bodies})


@blueprint.get("/healthz")
async def health() -> Response:
    """Report liveness, job counts per status and this process's load."""
    current = scheduler()
    counts = await current.store.counts()
    body = {
        "status": "ok" if current.accepting else "stopping",
        "jobs": counts,
        "streams": current.open_streams,
        "worker": {
            "id": current.supervisor.worker_id,
            "running": current.supervisor.running_count,
            "concurrency": current.settings.concurrency,
        },
    }
    return json_response(body, 200 if current.accepting else 503)
