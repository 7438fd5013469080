"""An ASGI fast path for submissions: ``POST /api`` and ``POST /api/jobs``.

Submitting is the busiest write. This middleware reads the body, submits the job and sends
the ``202`` without the framework's request handling, with the same parsing and response
helpers as the Quart routes (``api/common.py``, ``views.py``). Every error goes to the
Quart route with the body replayed, so the route raises the same error and renders it.
Requests that this middleware leaves alone go there too: an unusual Host header, a body
over the limit, or a service that is shutting down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .api.common import (
    accepted_headers,
    check_accepting,
    check_idempotency_key,
    parse_submission,
    route_path,
    simulated_submission,
)
from .errors import INTERNAL_ERROR_BODY, AppError
from .fastpath import encode_json, send_response
from .views import job_links

if TYPE_CHECKING:
    from .scheduler import Scheduler

Receive = Callable[[], Awaitable[dict[str, Any]]]

logger = logging.getLogger(__name__)

# Bodies that take longer go to the Quart route, which waits for them up to its own
# BODY_TIMEOUT (60 s by default) and then responds with 408.
FAST_BODY_TIMEOUT_S = 5.0

_CONTRACT_PATH = "/api"
_JOBS_PATH = "/api/jobs"
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class SubmitPath:
    """Wrap an ASGI app, serving job submissions directly and passing everything else on."""

    def __init__(self, app: Any, scheduler: Scheduler, dumps: Callable[[Any], str]) -> None:
        self.app = app
        self.scheduler = scheduler
        self.dumps = dumps

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        path = route_path(scope, "POST")
        if path is None:
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        status_url_base = _external_base(scope, root_path) if path == _CONTRACT_PATH else None
        if path not in (_CONTRACT_PATH, _JOBS_PATH) or (
            path == _CONTRACT_PATH and status_url_base is None
        ):
            # Quart builds the status URL from the Host header; unusual hosts go there.
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(FAST_BODY_TIMEOUT_S):
                complete = await self._read_body(scope, receive, chunks)
        except _DisconnectedError:
            return
        except TimeoutError:
            # A slow upload goes to the route, whose own body timeout responds with 408.
            complete = False
        body = b"".join(chunks)
        if complete:
            try:
                await self._submit(scope, status_url_base, body, send, root_path)
                return
            except AppError:
                # Nothing was sent or stored: the Quart route raises the same error.
                pass
            except Exception:
                # The job may be stored already, so the route must not submit it again.
                logger.exception("failed request with an unexpected error")
                await self._respond(send, dict(INTERNAL_ERROR_BODY), {}, status=500)
                return
        await self.app(scope, _replay(body, receive, complete), send)

    async def _read_body(
        self, scope: dict[str, Any], receive: Receive, chunks: list[bytes]
    ) -> bool:
        """Read the body into ``chunks``; return ``False`` when it stopped at the size limit."""
        limit = self.scheduler.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                return False
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away, so no response is needed.
                raise _DisconnectedError
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return False
            if not message.get("more_body", False):
                return True

    async def _submit(
        self,
        scope: dict[str, Any],
        status_url_base: str | None,
        body: bytes,
        send: Any,
        root_path: str,
    ) -> None:
        """Submit the job and send its ``202``; ``status_url_base`` is set for ``POST /api``."""
        current = self.scheduler
        key = check_idempotency_key(_header(scope, b"idempotency-key"))
        response: dict[str, Any]
        if status_url_base is not None:
            check_accepting(current)
            submission = parse_submission(body, body_required=False)
            if submission is None:
                submission = simulated_submission(current)
            job, created = await current.submit(submission, key)
            status_url = f"{status_url_base}/api?id={job.id}"
            headers = accepted_headers(current, job, status_url, replayed=not created)
            response = {"id": job.id, "status_url": status_url}
        else:
            check_accepting(current)
            submission = parse_submission(body, body_required=True)
            assert submission is not None
            job, created = await current.submit(submission, key)
            location = f"{root_path}/api/jobs/{job.id}"
            headers = accepted_headers(current, job, location, replayed=not created)
            response = current.describe(job)
            response["links"] = job_links(job.id, root_path)
        await self._respond(send, response, headers)

    async def _respond(
        self, send: Any, body: dict[str, Any], headers: dict[str, str], *, status: int = 202
    ) -> None:
        await send_response(send, encode_json(self.dumps, status, body, headers))


class _DisconnectedError(Exception):
    """Raised when the client disconnects before it has sent the whole body."""


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """Return a ``receive`` that first returns the body already read, then the rest."""
    replayed = False

    async def replay_receive() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replay_receive


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _external_base(scope: dict[str, Any], root_path: str) -> str | None:
    """Return ``scheme://host`` plus the root path as Quart's ``url_for`` builds it.

    Quart lowercases the Host header, drops a default port and encodes the name with IDNA.
    Hosts that IDNA would change or reject, and IPv6 literals, return ``None``.
    """
    scheme = scope["scheme"]
    host = (_header(scope, b"host") or "").lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port is not None and host.endswith(default_port):
        host = host[: -len(default_port)]
    name = host.partition(":")[0]
    if not name or name.startswith("["):
        return None
    try:
        if name.encode("idna").decode("ascii") != name:
            return None
    except UnicodeError:
        return None
    return f"{scheme}://{host}{root_path}"
