"""Running the API under uvicorn: alone (`aijobs api`), or beside the worker (`aijobs dev`).

In `aijobs dev` the worker owns SIGINT/SIGTERM (it drains gracefully); uvicorn's own signal
capture would replace the worker's handlers, so the embedded server leaves signals alone and
is stopped by the caller once the worker has finished.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from aijobs import eventloop
from aijobs.api.app import create_app
from aijobs.api.header_limits import BoundedHttpToolsProtocol
from aijobs.config import load_settings

#: Long-lived SSE streams would otherwise hold a shutdown open indefinitely.
GRACEFUL_SHUTDOWN_SECONDS = 5


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that installs no signal handlers (someone else owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=True,
        server_header=False,
        http=BoundedHttpToolsProtocol,
    )


def app_from_env() -> FastAPI:
    """The factory uvicorn imports in each process of `aijobs api --workers N`."""
    settings = load_settings()
    logging.getLogger("aijobs.api").info("API process starting")
    app = create_app(settings)
    # uvicorn starts this process's loop itself, so eventloop.run's freeze does not apply.
    eventloop.freeze_heap()
    return app
