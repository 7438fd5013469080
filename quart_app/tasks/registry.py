"""The task registry: named functions with a params model, and how each one runs."""

from __future__ import annotations

import enum
import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..errors import ConfigError, UnknownTaskError

logger = logging.getLogger(__name__)


class TaskKind(enum.StrEnum):
    """The executor of a task's function."""

    ASYNC = "async"  # on the event loop
    THREAD = "thread"  # in a worker thread, for blocking I/O
    PROCESS = "process"  # in a process pool, for CPU-bound work


class NoParams(BaseModel):
    """The params model of a task that takes none."""


@dataclass(frozen=True)
class Task:
    """A registered kind of work."""

    name: str
    function: Callable[..., Any]
    params_model: type[BaseModel]
    kind: TaskKind
    description: str
    # Returns the expected run time in seconds from the params, when they determine it.
    estimate_s: Callable[[Any], float] | None = None

    def parse_params(self, params: dict[str, Any]) -> BaseModel:
        """Validate ``params``; raise pydantic's ``ValidationError`` when they break the model."""
        return self.params_model.model_validate(params)

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


class TaskRegistry:
    """Name -> ``Task``. The ``task`` decorator registers into the default instance."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Any:
        return iter(sorted(self._tasks.values(), key=lambda task: task.name))

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTaskError(
                f"unknown task {name!r}: choose one of the registered tasks ({known}); "
                "GET /api/tasks lists them with their params"
            ) from None

    def register(
        self,
        name: str,
        *,
        params: type[BaseModel] = NoParams,
        cpu_bound: bool = False,
        estimate_s: Callable[[Any], float] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the decorated function as task ``name`` and return it unchanged.

        ``async def`` functions run on the event loop. Plain functions run in a thread, or in
        a process pool when ``cpu_bound`` is true, and then must be importable by name.
        """

        def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._tasks and self._tasks[name].function is not function:
                raise ConfigError(f"task {name!r} is registered twice: give each task its own name")
            if inspect.iscoroutinefunction(function):
                if cpu_bound:
                    raise ConfigError(f"task {name!r}: a cpu_bound task must be a plain function")
                kind = TaskKind.ASYNC
            else:
                kind = TaskKind.PROCESS if cpu_bound else TaskKind.THREAD
            doc = inspect.getdoc(function) or ""
            self._tasks[name] = Task(
                name=name,
                function=function,
                params_model=params,
                kind=kind,
                description=doc.split("\n\n")[0].replace("\n", " "),
                estimate_s=estimate_s,
            )
            return function

        return decorator


registry = TaskRegistry()
task = registry.register


def load_task_modules(modules: tuple[str, ...]) -> None:
    """Import the user's task modules so their ``@task`` decorators run."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(
                f"SCHEDULER_TASKS names module {module!r}, which cannot be imported ({error}); "
                "give dotted module names on the Python path, separated by commas"
            ) from error
        except (Exception, SystemExit) as error:
            raise ConfigError(
                f"task module {module!r} from SCHEDULER_TASKS failed while importing: "
                f"{type(error).__name__}: {error}"
            ) from error
        logger.info("loaded task module %s", module)
