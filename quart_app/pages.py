"""HTML pages: the dashboard and the local assets of the API docs page."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from quart import Blueprint, Response, render_template, send_from_directory

from .errors import NotFoundError

blueprint = Blueprint("pages", __name__)

# Scripts and styles come only from this app's own files; job data is never run as code.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

_SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
_SWAGGER_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})


@blueprint.get("/")
async def dashboard() -> Response:
    """Render the dashboard: every job with its status, progress and a live countdown."""
    response = Response(await render_template("index.html"), content_type="text/html")
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/docs/assets/<path:name>")
async def docs_asset(name: str) -> Response:
    if name not in _SWAGGER_ASSETS:
        raise NotFoundError(f"no docs asset named {name!r}")
    return await send_from_directory(_SWAGGER_DIR, name)
