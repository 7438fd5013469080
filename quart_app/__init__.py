"""An asynchronous work scheduler on Quart: submit work over HTTP and follow it to its result.

``quart_app:app`` builds itself from ``SCHEDULER_*`` environment variables on first use, so
``hypercorn quart_app:app`` works and importing the package has no side effects.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Settings
from .factory import LazyApp, create_app
from .tasks import TaskContext, task

app = LazyApp()

__all__ = ["Settings", "TaskContext", "app", "create_app", "task"]
