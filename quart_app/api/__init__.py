"""Route-only blueprints; each parses input, calls the scheduler and shapes the response."""

from __future__ import annotations

from . import contract, jobs, streams, tasks, websocket

blueprints = (
    contract.blueprint,
    jobs.blueprint,
    streams.blueprint,
    tasks.blueprint,
    websocket.blueprint,
)

__all__ = ["blueprints"]
