"""Prometheus metrics of the API's own requests: by method, route template and status class.

The route is the template the router matched (`/api/jobs/{job_id}`), read from the scope
after the app ran; a request no route matched counts as `unmatched`, so neither a job id
nor a scanner's made-up paths become a label. Outermost, so refusals made by the other
middleware (413, 503, CORS) are counted too.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aijobs.monitoring.metrics import metrics

UNMATCHED = "unmatched"


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            metrics().http_request(scope["method"], route, status, time.perf_counter() - start)
