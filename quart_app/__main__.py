"""``python -m quart_app``: run the service under Hypercorn."""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import os
import signal
import sys
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from . import app
from .api.websocket import MAX_MESSAGE_BYTES
from .config import Settings
from .errors import ConfigError
from .factory import create_app
from .workers import run_workers

DEFAULT_BIND = "localhost:5000"
# Time Hypercorn allows the app's shutdown beyond the supervisor's grace period.
SHUTDOWN_MARGIN_S = 15.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m quart_app",
        description="Run the scheduler. Settings come from SCHEDULER_* environment variables.",
    )
    parser.add_argument(
        "-b",
        "--bind",
        action="append",
        help=f"HOST:PORT, unix:PATH or fd://N to listen on; repeatable (default {DEFAULT_BIND})",
    )
    parser.add_argument("-w", "--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--root-path", default="", help="path prefix the app is served under, such as /scheduler"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers} is invalid: use 1 or more")
    return args


def logging_config(level: str, access_log: bool) -> dict[str, Any]:
    """Hypercorn applies this in every worker process, so spawned workers log the same way."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
        },
        "loggers": {
            "quart_app": {"level": level, "handlers": ["stderr"], "propagate": False},
            "hypercorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "hypercorn.access": {
                "level": "INFO" if access_log else "WARNING",
                "handlers": ["stderr"],
                "propagate": False,
            },
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        # Build the app now so that bad settings or task modules stop start-up with a
        # message instead of failing inside the server's lifespan start-up.
        if args.workers == 1:
            app.load()
        else:
            create_app(settings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    config = Config()
    config.application_path = "quart_app:app"
    config.bind = args.bind or [DEFAULT_BIND]
    config.root_path = args.root_path
    config.logconfig_dict = logging_config(settings.log_level, args.access_log)
    # Hypercorn builds each request's log fields whenever an access log is set, which costs
    # about a tenth of a small request's CPU time, so it is set only on request.
    config.accesslog = "-" if args.access_log else None
    config.errorlog = "-"
    config.shutdown_timeout = settings.shutdown_grace_s + SHUTDOWN_MARGIN_S
    # Hypercorn buffers a whole WebSocket message before passing it to the app. The feed's
    # messages are small, so a bigger one is rejected before it can fill memory.
    config.websocket_max_message_size = MAX_MESSAGE_BYTES
    logging.config.dictConfig(config.logconfig_dict)
    if args.workers == 1:
        # Serve in this process: signals reach the app directly, and the process id is
        # the server's.
        asyncio.run(serve_one(config))
        return 0
    worker_args = ["--root-path", args.root_path, *(["--access-log"] if args.access_log else [])]
    return run_workers(config, args.workers, worker_args)


async def serve_one(config: Config) -> None:
    """Serve in this process; on SIGTERM or SIGINT, end event streams before Hypercorn drains.

    Hypercorn waits for open requests during its graceful shutdown, and event streams never
    finish by themselves, so they are closed first and their clients reconnect elsewhere.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        app.load().extensions["scheduler"].begin_shutdown()

    try:
        await serve(app, config, shutdown_trigger=shutdown_trigger)
    except OSError as error:
        # Hypercorn starts the app before it binds, and a failed bind skips the app's
        # shutdown. The store's threads would then keep the process alive.
        await app.load().extensions["scheduler"].stop()
        reason = error.strerror or str(error)
        raise SystemExit(
            f"failed to listen on {', '.join(config.bind)}: {reason}; "
            "choose a free address with --bind HOST:PORT"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
