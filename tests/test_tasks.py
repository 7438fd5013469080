from __future__ import annotations

import pytest
from pydantic import BaseModel

from quart_app.errors import ConfigError, UnknownTaskError
from quart_app.tasks import TaskContext, TaskKind, TaskRegistry, load_task_modules


class Params(BaseModel):
    n: int


def test_registry_infers_where_tasks_run() -> None:
    registry = TaskRegistry()

    @registry.register("a", params=Params)
    async def on_loop(context: TaskContext, params: Params) -> int:
        return params.n

    @registry.register("b")
    def in_thread(context: TaskContext, params: BaseModel) -> None:
        """Do blocking work.

        More detail here."""

    @registry.register("c", cpu_bound=True)
    def in_process(context: TaskContext, params: BaseModel) -> None: ...

    assert registry.get("a").kind is TaskKind.ASYNC
    assert registry.get("b").kind is TaskKind.THREAD
    assert registry.get("b").description == "Do blocking work."
    assert registry.get("c").kind is TaskKind.PROCESS


def test_registry_rejects_duplicate_name() -> None:
    registry = TaskRegistry()

    @registry.register("a")
    async def first(context: TaskContext, params: BaseModel) -> None: ...

    with pytest.raises(ConfigError, match="registered twice"):

        @registry.register("a")
        async def second(context: TaskContext, params: BaseModel) -> None: ...


def test_registry_rejects_async_cpu_bound_task() -> None:
    with pytest.raises(ConfigError, match="must be a plain function"):

        @TaskRegistry().register("a", cpu_bound=True)
        async def spin(context: TaskContext, params: BaseModel) -> None: ...


def test_registry_unknown_task_lists_known_ones() -> None:
    registry = TaskRegistry()

    @registry.register("known")
    async def known(context: TaskContext, params: BaseModel) -> None: ...

    with pytest.raises(UnknownTaskError, match=r"unknown task 'other'.*\(known\)"):
        registry.get("other")


def test_load_task_modules_names_bad_module() -> None:
    with pytest.raises(ConfigError, match="'missing.module', which cannot be imported"):
        load_task_modules(("missing.module",))


def test_context_report_clamps_and_rejects_nan() -> None:
    reports: list[tuple[str, float, str | None]] = []
    context = TaskContext("job", 1, lambda *args: reports.append(args), lambda: False)

    context.report(1.5, "x" * 500)
    context.report(-1)

    assert reports[0][1] == 1.0
    assert reports[0][2] is not None and len(reports[0][2]) == 200
    assert reports[1][1] == 0.0
    with pytest.raises(ValueError, match="finite"):
        context.report(float("nan"))
