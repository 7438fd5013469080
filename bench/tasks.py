"""A task whose duration the scheduler must learn from history, for the estimate benchmark."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from quart_app import TaskContext, task


class WorkParams(BaseModel):
    seconds: float = Field(ge=0, le=600)


@task("bench.work", params=WorkParams)
async def work(context: TaskContext, params: WorkParams) -> None:
    """Run for the given time without declaring it, reporting progress ten times."""
    for step in range(1, 11):
        await asyncio.sleep(params.seconds / 10)
        context.report(step / 10)
