"""The worker's `/metrics` endpoint: prometheus_client's WSGI app on a daemon thread.

A thread, not the event loop, so a slow scraper can never delay claims or heartbeats; it
only reads in-memory counters and the cached queue gauges, never the database. With a
token (METRICS_TOKEN) it answers only `Authorization: Bearer <token>`, as the API's does.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from aijobs.monitoring.metrics import Metrics

log = logging.getLogger("aijobs.worker")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve_metrics(port: int, metrics: Metrics, host: str = "0.0.0.0", token: str | None = None) -> int:
    """Start serving; returns the bound port (useful with port 0)."""
    app: WsgiApp = make_wsgi_app(metrics.scrape_registry)
    if token is not None:
        app = _guarded(app, token)
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    bound = int(server.server_port)
    log.info("📈 Prometheus metrics on http://%s:%d/metrics", host, bound)
    return bound


def _guarded(app: WsgiApp, token: str) -> WsgiApp:
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
        )
        return [b"/metrics needs Authorization: Bearer <METRICS_TOKEN>\n"]

    return guarded
