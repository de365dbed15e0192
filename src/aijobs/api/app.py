"""The FastAPI application factory.

`create_app` wires settings into one `ApiState`; the lifespan opens the store (unless one
is given) and the single LISTEN connection that feeds every SSE stream and long poll. The
order of middleware matters: the HTTP metrics outermost (they count every answer), then CORS
(so refusals carry CORS headers too and the browser can read them), then the body limit,
which runs before anything parses a body, then the 503 for a database out of reach (which
may replay a body, bounded by then).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from uuid import UUID

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from aijobs import __version__
from aijobs.api import problems
from aijobs.api.auth import TokenVerifier
from aijobs.api.events import JobEventsHub
from aijobs.api.grouped_creation import CreationGroups
from aijobs.api.http_metrics import HttpMetricsMiddleware
from aijobs.api.job_schemas import add_job_types
from aijobs.api.limits import BodyLimitMiddleware
from aijobs.api.models import BATCH_PATHS, JobEvent
from aijobs.api.routes import admin, dashboard, docs, health, jobs, me, pages, webhooks
from aijobs.api.state import ApiState
from aijobs.api.streams import StreamCap
from aijobs.api.unavailable import DatabaseUnavailableMiddleware
from aijobs.config import ConfigError, Settings
from aijobs.db.store import Store
from aijobs.jobs import configure as configure_job_types
from aijobs.jobs import registry
from aijobs.monitoring.metrics import process_exiting

EXPOSED_HEADERS = ["Idempotent-Replayed", "Location", "Retry-After"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "apikey", "Last-Event-ID"]


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    dev_user: UUID | None = None,
    extra_routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The API for `settings.database_url`. A given `store` is used and left open at shutdown.

    `dev_user` turns on dev mode (the /api-test page's mint button signs in as that user);
    `extra_routers` lets other parts of aijobs (the monitoring dashboard) mount their routes.
    """
    if not settings.database_url:
        raise ConfigError("DATABASE_URL: the API needs a database URL (the CLI resolves the embedded one)")
    if settings.aijobs_job_types:
        # Each process of `aijobs api --workers N` builds its app here: same types as the parent.
        configure_job_types(settings.aijobs_job_types)
    state = ApiState(
        settings=settings,
        verifier=TokenVerifier(settings),
        database_url=settings.database_url,
        streams=StreamCap(settings.max_streams_per_user),
        store=store,
        dev_user=dev_user,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        owns_store = state.store is None
        if state.store is None:
            state.store = await Store.open(
                state.database_url,
                min_size=1,
                max_size=settings.db_pool_size,
                name="aijobs-api",
                acquire_timeout=settings.db_acquire_timeout_seconds,
                prepare=settings.prepared_statements,
            )
        # The database enforces the quota for every caller; this deployment's value is its own.
        async with state.store.session() as session:
            await session.sync_settings(max_jobs_in_flight_per_user=settings.in_flight_quota)
        state.creations = CreationGroups(state.store)
        state.hub = JobEventsHub(
            settings.listen_url(state.database_url), poll_seconds=settings.polling_seconds
        )
        await state.hub.start()
        try:
            yield
        finally:
            await state.creations.aclose()
            await state.hub.stop()
            if owns_store:
                await state.store.close()
                state.store = None
            # Here, not at exit: uvicorn re-raises SIGTERM after a graceful shutdown.
            process_exiting()

    app = FastAPI(
        title="aijobs API",
        version=__version__,
        description=(
            "Jobs with credits for AI work. Authenticate with `Authorization: Bearer <Supabase access "
            "token>`; admin endpoints take the service key. Errors are RFC 9457 problem+json."
        ),
        lifespan=lifespan,
        # operationId = the handler's name (create_job, list_jobs, job_events): what client
        # generators name their methods after, instead of create_job_api_jobs_post.
        generate_unique_id_function=lambda route: route.name,
        docs_url=None,  # served by routes/docs.py from packaged assets, not a CDN
        redoc_url=None,  # its bundle loads an image from a CDN
    )
    app.state.aijobs = state
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    problems.install(app)
    routers = (health.router, jobs.router, me.router, webhooks.me_router, admin.router, webhooks.admin_router)
    for router in (*routers, pages.router, *extra_routers):
        app.include_router(router)
    app.include_router(docs.router)  # /docs, with no CDN
    app.include_router(dashboard.router)  # /dashboard, admin only
    app.include_router(dashboard.metrics_router)  # /metrics for Prometheus
    if state.dev:
        app.include_router(pages.dev_router)
    static = resources.files("aijobs.api") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.mount(docs.ASSETS, docs.assets(), name="docs-assets")

    app.add_middleware(DatabaseUnavailableMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        larger=dict.fromkeys(BATCH_PATHS, max(settings.max_batch_body_bytes, settings.max_body_bytes)),
    )
    origins, origin_regex = parse_cors_origins(settings.cors_origins)
    if origins or origin_regex:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_origin_regex=origin_regex,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(HttpMetricsMiddleware)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the models only SSE data carries (a stream has no response model)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        extra = JobEvent.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(extra.pop("$defs", {}))
        components["JobEvent"] = extra
        add_job_types(schema, registry())
        app.openapi_schema = schema
    return app.openapi_schema


def parse_cors_origins(value: str) -> tuple[list[str], str | None]:
    """CORS_ORIGINS: comma-separated exact origins (`https://app.example`, `chrome-extension://<id>`),
    `*` for any, or patterns with `*` (`https://*.example.com`) matched as one label."""
    exact: list[str] = []
    patterns: list[str] = []
    for item in (part.strip().rstrip("/") for part in value.split(",")):
        if not item:
            continue
        if item == "*":
            return ["*"], None
        if "*" in item:
            patterns.append(re.escape(item).replace(r"\*", r"[^/.:]+"))
        else:
            exact.append(item)
    return exact, ("^(?:" + "|".join(patterns) + ")$") if patterns else None
