"""Route-only blueprints; each parses input, calls the scheduler and shapes the response."""

from __future__ import annotations

from . import contract, jobs, tasks

blueprints = (contract.blueprint, jobs.blueprint, tasks.blueprint)

__all__ = ["blueprints"]
