"""Exceptions and the HTTP error handlers that render them as JSON.

The tree::

    AppError                      500, the base; never shown to clients with details
    ├── ConfigError               bad settings, stops start-up
    ├── BadRequestError           400, malformed input (JSON syntax, query values)
    │   └── InvalidIdError        400, the ``/api`` contract's fixed "Invalid id!"
    ├── ValidationError           422, well-formed input that breaks a rule, with field errors
    │   └── UnknownTaskError      422, a task name that is not registered
    ├── NotFoundError             404
    ├── GoneError                 410, a job purged by retention
    ├── ConflictError             409, an illegal state change or a reused idempotency key
    └── UnavailableError          503, the service is shutting down
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from quart import Quart, Response

logger = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every error this service raises on purpose."""

    status_code = 500

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


class ConfigError(AppError):
    """A setting has a value the service cannot start with."""


class BadRequestError(AppError):
    status_code = 400


class InvalidIdError(BadRequestError):
    """The ``/api`` contract returns the same message for every bad or unknown id."""

    def __init__(self) -> None:
        super().__init__("Invalid id!")


class ValidationError(AppError):
    status_code = 422


class UnknownTaskError(ValidationError):
    pass


class NotFoundError(AppError):
    status_code = 404


class GoneError(AppError):
    status_code = 410


class ConflictError(AppError):
    status_code = 409


class UnavailableError(AppError):
    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


def register_error_handlers(app: Quart) -> None:
    """Render every error as JSON ``{"message": ...}`` so no client sees HTML or a traceback."""

    @app.errorhandler(AppError)
    async def handle_app_error(error: AppError) -> Response:
        if error.status_code >= 500 and not isinstance(error, UnavailableError):
            logger.error("failed request: %s", error.message)
        return _json_response(app, error.body(), error.status_code, error.headers)

    @app.errorhandler(HTTPException)
    async def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        message = _HTTP_MESSAGES.get(status) or error.description or error.name
        headers = {}
        if status == 405 and error.response is None:
            allowed = getattr(error, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return _json_response(app, {"message": message}, status, headers)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        logger.exception("failed request with an unexpected error", exc_info=error)
        return _json_response(app, dict(INTERNAL_ERROR_BODY), 500)


INTERNAL_ERROR_BODY = {"message": "Internal server error; see the server log."}


_HTTP_MESSAGES = {
    404: "Not found: no route matches this path; see /openapi.json for the API.",
    405: "Method not allowed on this path; see the Allow header.",
    413: "Request body too large: send at most SCHEDULER_MAX_BODY_BYTES bytes.",
}


def _json_response(
    app: Quart, body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    response: Response = app.json.response(body)  # type: ignore[assignment]
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response
