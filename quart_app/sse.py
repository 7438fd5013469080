"""Server-sent events encoding: the one place that turns events into ``text/event-stream``."""

from __future__ import annotations

import json
import re
from typing import Any

_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def encode_event(data: Any, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """Encode one event. ``data`` that is not a string is sent as compact JSON.

    Multi-line data becomes several ``data:`` lines, and line breaks are removed from
    ``event`` and ``id``, where the format does not allow them.
    """
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines = []
    if event_id is not None:
        lines.append(f"id: {_single_line(event_id)}")
    if event is not None:
        lines.append(f"event: {_single_line(event)}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK_RE.split(text))
    return ("\n".join(lines) + "\n\n").encode()


def encode_retry(retry_ms: int) -> bytes:
    """Tell the client how long to wait before it reconnects."""
    return f"retry: {int(retry_ms)}\n\n".encode()


def encode_comment(text: str = "") -> bytes:
    """Encode a comment line, which clients ignore and proxies count as traffic; it has no id."""
    return f": {_single_line(text)}\n\n".encode()


def _single_line(text: str) -> str:
    return _LINE_BREAK_RE.sub("", text)
