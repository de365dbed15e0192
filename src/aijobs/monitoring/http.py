"""The worker's `/metrics` endpoint: prometheus_client's HTTP server on a daemon thread.

A thread, not the event loop, so a slow scraper can never delay claims or heartbeats; it
only reads in-memory counters and the cached queue gauges, never the database.
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from aijobs.monitoring.metrics import Metrics

log = logging.getLogger("aijobs.worker")


def serve_metrics(port: int, metrics: Metrics, host: str = "0.0.0.0") -> int:
    """Start serving; returns the bound port (useful with port 0)."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.scrape_registry)
    bound = int(server.server_port)
    log.info("📈 Prometheus metrics on http://%s:%d/metrics", host, bound)
    return bound
