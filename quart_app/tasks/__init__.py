"""Tasks: the registry, the context a running task receives, and the built-in tasks."""

from __future__ import annotations

from . import builtin as builtin
from .context import TaskCancelledError, TaskContext
from .registry import NoParams, Task, TaskKind, TaskRegistry, load_task_modules, registry, task
from .runner import TaskRunner

__all__ = [
    "NoParams",
    "Task",
    "TaskCancelledError",
    "TaskContext",
    "TaskKind",
    "TaskRegistry",
    "TaskRunner",
    "load_task_modules",
    "registry",
    "task",
]
