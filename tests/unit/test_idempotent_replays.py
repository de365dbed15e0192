"""Which routes the API runs again after a lost database connection when the request carries
an Idempotency-Key: exactly those that take the key (and claim it with their write). A route
that took the key unmarked would answer 503 where it could have replayed; one marked without
taking it would run its write twice."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from aijobs.api.app import create_app
from aijobs.api.creation import IDEMPOTENCY_HEADER
from aijobs.api.unavailable import honours_idempotency_key
from aijobs.config import load_settings


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every route of the app, through included routers (nested since FastAPI 0.13x)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: app.routes is already flat
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [
        c.original_route for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)
    ]


def takes_the_key(route: APIRoute) -> bool:
    return any(param.alias == IDEMPOTENCY_HEADER for param in route.dependant.header_params)


def test_exactly_the_routes_that_take_an_idempotency_key_are_replayed_with_it() -> None:
    settings = load_settings(database_url="postgresql://unused/unused", _env_file=None)
    routes = api_routes(create_app(settings, dev_user=None))
    taking = {f"{sorted(r.methods)} {r.path}" for r in routes if takes_the_key(r)}
    marked = {f"{sorted(r.methods)} {r.path}" for r in routes if honours_idempotency_key(r.endpoint)}
    assert taking >= {
        "['POST'] /api/jobs",
        "['POST'] /api/jobs/batch",
        "['POST'] /api/jobs/import",
        "['POST'] /api/jobs/{job_id}/retry",
    }
    assert marked == taking, "mark a route that claims its key with @replays_with_idempotency_key"
