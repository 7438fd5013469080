"""Helpers shared by the API blueprints: reading input and shaping job responses."""

from __future__ import annotations

import json
import random
import re
from typing import TYPE_CHECKING, Any, cast

import pydantic
from quart import Response, current_app, has_request_context, request, websocket

from ..errors import BadRequestError, UnavailableError, ValidationError
from ..scheduler import Scheduler, Submission
from ..views import job_links
from .schemas import SubmitRequest

if TYPE_CHECKING:
    from ..jobs import Job

SUBMIT_EXAMPLE = '{"task": "sleep", "params": {"seconds": 5}}'
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_JSON_DEPTH = 32


_LABEL_RE = re.compile(r"^[A-Za-z0-9-]{1,63}$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
MAX_HOST_NAME_LENGTH = 253
MAX_PORT = 65535

# Valid Host values remembered at most. A client that sends many distinct values only
# makes the check run again.
MAX_REMEMBERED_HOSTS = 64
_valid_hosts: set[bytes] = set()


def is_valid_host(host: str) -> bool:
    """Tell whether ``host`` is a DNS name, an IPv4 address or an IPv6 address in brackets,
    with an optional port.

    The rules are those of DNS names (labels of 1 to 63 letters, digits and hyphens),
    because werkzeug cannot build URLs from other names: it raises on empty or long
    labels and drops names with underscores.
    """
    if host.startswith("["):
        name, bracket, port = host.partition("]")
        if not bracket or not _IPV6_RE.match(name + bracket):
            return False
    else:
        name, separator, digits = host.partition(":")
        dotted = name[:-1] if name.endswith(".") else name
        if not dotted or len(dotted) > MAX_HOST_NAME_LENGTH:
            return False
        if not all(_LABEL_RE.match(label) for label in dotted.split(".")):
            return False
        port = separator + digits
    if not port:
        return True
    digits = port[1:]
    return (
        port.startswith(":")
        and digits.isascii()
        and digits.isdigit()
        and not digits.startswith("0")
        and int(digits) <= MAX_PORT
    )


def host_error(host: str) -> BadRequestError:
    return BadRequestError(
        f"missing or invalid Host header {host[:80]!r}: send the server's host name "
        "and port, such as Host: localhost:5000"
    )


def route_path(scope: dict[str, Any], method: str) -> str | None:
    """Return the path below the root path of a request that an ASGI fast path may serve.

    Return ``None`` for other methods, for schemes other than ``http`` and ``https``, and
    for a root path that the path lacks or that is not ASCII. Quart handles those.
    """
    if scope["type"] != "http" or scope["method"] != method:
        return None
    if scope.get("scheme") not in ("http", "https"):
        return None
    root_path: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root_path:
        if not root_path.isascii() or not path.startswith(root_path):
            return None
        path = path[len(root_path) :]
    return path


def host_is_valid(scope: dict[str, Any]) -> bool:
    """Tell whether an ASGI scope's Host header passes ``is_valid_host``."""
    for name, value in scope["headers"]:
        if name == b"host":
            return _check_host(value)
    return False


def _check_host(value: bytes) -> bool:
    # Clients of one server send one or a few Host values, so remembering the valid
    # ones skips the check on almost every request.
    if value in _valid_hosts:
        return True
    if not is_valid_host(value.decode("latin-1")):
        return False
    if len(_valid_hosts) < MAX_REMEMBERED_HOSTS:
        _valid_hosts.add(value)
    return True


async def check_host() -> None:
    """Reject a missing or malformed Host header, from which absolute URLs are built."""
    headers = request.headers if has_request_context() else websocket.headers
    host = headers.get("Host", "")
    if not is_valid_host(host):
        raise host_error(host)


def scheduler() -> Scheduler:
    return cast(Scheduler, current_app.extensions["scheduler"])


async def read_submission(*, body_required: bool) -> Submission | None:
    """Parse the request body into a ``Submission``; ``None`` for an allowed empty body.

    Raise ``BadRequestError`` for malformed JSON and ``ValidationError`` for a body that
    breaks the schema, each naming the offending value.
    """
    raw = await request.get_data(as_text=False)
    return parse_submission(raw, body_required=body_required)


def parse_json(raw: str | bytes, *, example: str) -> dict[str, Any]:
    """Parse a JSON object; raise ``BadRequestError`` naming the problem otherwise.

    NaN and Infinity are rejected because they are not JSON and would be stored and sent
    back in responses that standard parsers cannot read.
    """
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        # ValueError covers syntax errors and integers longer than Python parses.
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise BadRequestError(
            f"malformed JSON ({reason[:200]}): send a JSON object such as {example}"
        ) from error
    if not isinstance(data, dict):
        raise BadRequestError(
            f"expected a JSON object, got a JSON {_json_type(data)}: send {example}"
        )
    if _depth(data) > MAX_JSON_DEPTH:
        raise BadRequestError(
            f"JSON nested more than {MAX_JSON_DEPTH} levels deep: flatten the params"
        )
    return data


def submission_from(data: dict[str, Any]) -> Submission:
    """Validate a submission body; raise ``ValidationError`` listing the bad fields."""
    try:
        model = SubmitRequest.model_validate(data)
    except pydantic.ValidationError as error:
        raise body_error(error) from error
    return Submission(
        task=model.task,
        params=model.params,
        priority=model.priority,
        timeout_s=model.timeout,
        max_attempts=model.max_attempts,
        delay_s=model.delay,
    )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return level
    return max((_depth(child, level + 1) for child in children), default=level)


def body_error(error: pydantic.ValidationError) -> ValidationError:
    """Turn pydantic's errors on a submission into a 422 with one entry per field."""
    errors = []
    for detail in error.errors():
        field = ".".join(str(part) for part in detail["loc"]) or "body"
        problem = detail["msg"]
        if detail["type"] == "extra_forbidden":
            problem = "unknown field; allowed: task, params, priority, timeout, max_attempts, delay"
        elif "input" in detail and detail["type"] != "missing":
            problem = f"{problem} (got {json.dumps(detail['input'], default=str)[:100]})"
        errors.append({"field": field, "problem": problem})
    summary = "; ".join(f"{item['field']}: {item['problem']}" for item in errors)
    return ValidationError(f"invalid job submission: {summary}", errors=errors)


def idempotency_key() -> str | None:
    return check_idempotency_key(request.headers.get("Idempotency-Key"))


def check_idempotency_key(key: str | None) -> str | None:
    """Return a valid ``Idempotency-Key`` value, or ``None`` when the header is missing."""
    if key is None:
        return None
    if not key.strip() or len(key.encode("latin-1")) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise BadRequestError(
            f"invalid Idempotency-Key {key[:50]!r}: send 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} "
            "bytes, for example a UUID"
        )
    return key


def require_accepting() -> None:
    check_accepting(scheduler())


def check_accepting(current: Scheduler) -> None:
    if not current.accepting:
        raise UnavailableError("the service is shutting down and accepts no new jobs; retry later")


def parse_submission(raw: str | bytes, *, body_required: bool) -> Submission | None:
    """Parse a submission body; ``None`` for an empty body where one is not required."""
    if not raw.strip():
        if body_required:
            raise BadRequestError(f"missing JSON body: send a job such as {SUBMIT_EXAMPLE}")
        return None
    return submission_from(parse_json(raw, example=SUBMIT_EXAMPLE))


def simulated_submission(current: Scheduler) -> Submission:
    """Return the job that ``POST /api`` without a body runs: a ``sleep`` of random length."""
    low, high = current.settings.simulated_seconds
    seconds = round(random.uniform(low, high), 3)
    return Submission(task="sleep", params={"seconds": seconds}, simulated=True)


def accepted_headers(
    current: Scheduler, job: Job, location: str, *, replayed: bool
) -> dict[str, str]:
    """Return the headers of a ``202`` for a submitted job."""
    headers = {"Location": location}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    estimate = current.estimate(job)
    if estimate is not None:
        headers["Retry-After"] = str(estimate.retry_after_s)
    return headers


def job_body(job: Job) -> dict[str, Any]:
    body = scheduler().describe(job)
    body["links"] = job_links(job.id, request.root_path)
    return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response: Response = current_app.json.response(body)  # type: ignore[assignment]
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response
