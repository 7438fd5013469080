"""Job stores. ``from_url`` picks the backend from the URL scheme."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import JobStore, WorkerInfo

__all__ = ["JobStore", "WorkerInfo", "from_url"]


def from_url(url: str) -> JobStore:
    """Build the store for ``sqlite:///path/to/file.db`` or ``memory://``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(
                f"SCHEDULER_STORE={url!r} names no file: use sqlite:///scheduler.db "
                "(relative) or sqlite:////var/lib/scheduler/jobs.db (absolute)"
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ConfigError(
                f"SCHEDULER_STORE={url!r} points into {folder!r}, which does not exist or is "
                "not writable: create the folder or choose another path"
            )
        from .sqlite import SQLiteStore

        return SQLiteStore(path)
    if scheme == "memory":
        from .sqlite import SQLiteStore

        return SQLiteStore(":memory:")
    raise ConfigError(
        f"SCHEDULER_STORE={url!r} has an unsupported scheme {scheme!r}: "
        "use sqlite:///path/to/file.db or memory://"
    )
