"""The application factory: it wires settings, routes, error handlers and the scheduler."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart
from quart_schema import Info, QuartSchema

from . import __version__, pages
from .api import blueprints
from .api.common import check_host
from .config import Settings
from .errors import register_error_handlers
from .fastpath import FastPath
from .hostguard import HostGuard
from .scheduler import Scheduler
from .stream_fastpath import EventStreamPath
from .submit_fastpath import SubmitPath
from .tasks import TaskRegistry, load_task_modules, registry

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent


def _asset_dir(name: str) -> Path:
    # A wheel carries static/ and templates/ inside the package; a source checkout keeps
    # them at the top of the repository.
    inside = _PACKAGE_DIR / name
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / name


def create_app(settings: Settings | None = None, *, tasks: TaskRegistry | None = None) -> Quart:
    """Build the app; settings come from ``SCHEDULER_*`` variables when not given."""
    settings = settings or Settings.from_env(os.environ)
    load_task_modules(settings.task_modules)

    app = Quart(
        __name__,
        static_folder=str(_asset_dir("static")),
        template_folder=str(_asset_dir("templates")),
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Relative URLs keep the docs page working under a path prefix (root_path).
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = "docs/assets/swagger-ui-bundle.js"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = "docs/assets/swagger-ui.css"
    QuartSchema(
        app,
        info=Info(title="Asynchronous Work Scheduler", version=__version__),
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        # These two pages load their scripts from a CDN; the Swagger UI is served locally.
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    # A doubled slash, as in /api/jobs//result, gets a JSON 404 instead of werkzeug's
    # HTML redirect to the merged path.
    app.url_map.merge_slashes = False
    register_error_handlers(app)
    app.before_request(check_host)
    app.before_websocket(check_host)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    app.register_blueprint(pages.blueprint)

    scheduler = Scheduler(settings, tasks or registry)
    app.extensions["scheduler"] = scheduler
    app.before_serving(scheduler.start)
    app.after_serving(scheduler.stop)

    # Compact separators, as Quart's own JSON responses use outside debug mode.
    dumps = functools.partial(app.json.dumps, separators=(",", ":"))
    submissions = SubmitPath(app.asgi_app, scheduler, dumps)
    streams = EventStreamPath(submissions, scheduler)
    fast_path = FastPath(streams, scheduler, dumps)
    app.asgi_app = HostGuard(fast_path, dumps)  # type: ignore[method-assign, assignment]
    if settings.proxy_hops > 0:
        # Trust X-Forwarded-Proto/Host/For from this many proxies in front of the app.
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app, mode="legacy", trusted_hops=settings.proxy_hops
        )
    return app


class LazyApp:
    """An ASGI app that builds the real one with ``create_app()`` on first use.

    It lets ``hypercorn quart_app:app`` find a module-level app while importing the package
    reads no environment and opens nothing. Attribute access reaches the built ``Quart`` app.
    """

    def __init__(self) -> None:
        self._app: Quart | None = None

    def load(self) -> Quart:
        if self._app is None:
            self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.load()(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.load(), name)
