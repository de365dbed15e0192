"""`/dashboard` (admin only) and `/metrics`: the operators' view of the system.

Server-rendered with Jinja2; a ~100-line vendored script (static/dashboard.js) re-fetches the
live fragment every two seconds and swaps it in, so the page updates without reloading and
with no build step or CDN. Charts are SVG drawn on the server (aijobs.monitoring.charts).

Who may look: the service key or a user token with the admin claim — as a Bearer header, or
pasted once into /dashboard/login, which keeps it in an HttpOnly, SameSite=Strict cookie
scoped to /dashboard. Buttons that change state also require an `X-Dashboard` header, which
a cross-site form cannot send. With no auth configured at all, the dashboard opens only to
loopback clients, under a loud red banner saying so.

`/metrics` is Prometheus' text format, open like most scrape targets unless METRICS_TOKEN is
set (then a bearer token, as Prometheus' `authorization` scrape setting sends it): no label
carries a user or job id. Its queue gauges come from a cache refreshed at most every few seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs
from uuid import UUID

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from psycopg_pool import PoolTimeout

from aijobs.api import id_search
from aijobs.api.auth import Principal
from aijobs.api.problems import ProblemError, not_found, unauthorized
from aijobs.api.routes import admin as admin_routes
from aijobs.api.state import ApiState, get_state, get_store
from aijobs.db.read_rows import FoundJobRow
from aijobs.db.store import Store
from aijobs.monitoring import dashboard_data, view
from aijobs.monitoring.gauges import GaugeRefresher
from aijobs.monitoring.metrics import CONTENT_TYPE, metrics

log = logging.getLogger("aijobs.api")
router = APIRouter(prefix="/dashboard", include_in_schema=False)
#: Webhook deliveries the live panel lists, newest first.
WEBHOOK_ROWS = 15
#: A search by the end of an id reads this many of the newest ids at most (an index range,
#: tens of milliseconds), and lists this many matches.
FIND_SCAN = 100_000
FIND_LIMIT = 20
metrics_router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(resources.files("aijobs.api") / "templates"))
templates.env.filters["dur"] = view.seconds
templates.env.filters["pct"] = view.percent
templates.env.filters["shortid"] = view.short_id
COOKIE = "aijobs_dashboard"
#: Seconds a scrape waits for fresh queue gauges before serving the last snapshot.
METRICS_REFRESH_TIMEOUT = 2.0
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
StoreDep = Annotated[Store, Depends(get_store)]
StateDep = Annotated[ApiState, Depends(get_state)]


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    open_dev: bool = False  # no auth configured: open to loopback only, with a warning


def auth_configured(state: ApiState) -> bool:
    s = state.settings
    return bool(s.service_role_key or s.jwt_secret or s.jwt_jwks_url)


async def check_token(state: ApiState, token: str) -> Principal:
    if state.verifier.is_service_key(token):
        return Principal(user_id=None, service=True)
    claims = await state.verifier.verify(token)
    principal = Principal(user_id=UUID(str(claims["sub"])), claims=claims)
    if not principal.is_admin:
        raise ProblemError(403, "the dashboard is for administrators", code="forbidden")
    return principal


async def viewer(request: Request, state: StateDep) -> Viewer:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or request.headers.get("apikey") or request.cookies.get(COOKIE)
    if token:
        return Viewer(await check_token(state, token))
    if not auth_configured(state):
        client = request.client.host if request.client else ""
        # The Host too: a web page whose name an attacker re-points at 127.0.0.1 (DNS
        # rebinding) reaches a loopback client address, but names its own host.
        if client in LOOPBACK and _host_name(request.headers.get("host", "")) in LOOPBACK:
            return Viewer(Principal(user_id=None, service=True), open_dev=True)
        raise ProblemError(
            403,
            "no auth is configured: the dashboard opens only from this machine, as http://localhost:<port>;"
            " set SERVICE_ROLE_KEY to open it from elsewhere",
            code="forbidden",
        )
    raise unauthorized("the dashboard needs the service key or an admin's token")


ViewerDep = Annotated[Viewer, Depends(viewer)]


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8000` is `::1`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def refresher(request: Request, store: Store) -> GaugeRefresher:
    """One gauge refresher per app (its lock makes concurrent scrapes share a refresh)."""
    existing = getattr(request.app.state, "monitoring_refresher", None)
    if isinstance(existing, GaugeRefresher) and existing.store is store:
        return existing
    fresh = GaugeRefresher(store, metrics().queue)
    request.app.state.monitoring_refresher = fresh
    return fresh


@metrics_router.get("/metrics")
async def prometheus_metrics(request: Request, store: StoreDep, state: StateDep) -> Response:
    """Always an answer: with the database out of reach the counters are still true and the
    queue gauges are the last snapshot, whose age `aijobs_queue_snapshot_age_seconds` shows.
    With METRICS_TOKEN set, only to `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = state.settings.metrics_token
    if expected is not None:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise unauthorized("/metrics needs Authorization: Bearer <METRICS_TOKEN>")
    try:
        # Bounded: a database that does not answer would otherwise hold the scrape for the
        # pool's 30 s connection wait, past any scraper's timeout.
        async with asyncio.timeout(METRICS_REFRESH_TIMEOUT):
            await refresher(request, store).refresh_if_stale()
    except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:
        log.warning("/metrics: queue gauges not refreshed (serving the last snapshot): %s", exc)
    return Response(metrics().render(), media_type=CONTENT_TYPE)


async def live_context(state: ApiState, store: Store) -> dict[str, Any]:
    async with store.session() as session:
        data = await dashboard_data.load(session, dead_after_seconds=state.settings.lease_seconds)
        webhooks = await session.webhooks.recent(WEBHOOK_ROWS)
        switches = await session.job_types.switches()
    providers = [p for p in data.stats.providers if p.minutes == 60]
    live_by_type: dict[tuple[str, str], int] = {
        (r["type"], r["status"]): int(r["count"]) for r in data.stats.queue_depth
    }
    job_types = [
        {
            **t,
            "pending": live_by_type.get((t["name"], "pending"), 0),
            "processing": live_by_type.get((t["name"], "processing"), 0),
        }
        for t in switches
    ]
    return {
        "s": data.stats,
        "w1": data.stats.window(1),
        "w5": data.stats.window(5),
        "w15": data.stats.window(15),
        "w60": data.stats.window(60),
        "providers": providers,
        "tokens60": sum(p.input_tokens + p.output_tokens + p.reasoning_tokens for p in providers),
        "cost60": sum((p.cost_usd for p in providers), start=0),
        "provider_p50": max((p.p50_ms or 0 for p in providers), default=None) if providers else None,
        "provider_p95": max((p.p95_ms or 0 for p in providers), default=None) if providers else None,
        "charts": data.charts(),
        "failures": data.failures,
        "webhooks": webhooks,
        "job_types": job_types,
        "leader": data.leader,
        "now": datetime.now(UTC),
    }


@router.get("", response_class=HTMLResponse)
async def dashboard(request: Request, state: StateDep, store: StoreDep) -> Response:
    try:
        who = await viewer(request, state)
    except ProblemError as exc:
        if exc.status == 401:
            return RedirectResponse("/dashboard/login", status_code=303)
        raise
    context = await live_context(state, store)
    return templates.TemplateResponse(request, "dashboard.html", {**context, "open_dev": who.open_dev})


@router.get("/live", response_class=HTMLResponse)
async def live(request: Request, _who: ViewerDep, state: StateDep, store: StoreDep) -> Response:
    context = await live_context(state, store)
    return templates.TemplateResponse(request, "dashboard_live.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def inspect_job(request: Request, job_id: UUID, _who: ViewerDep, store: StoreDep) -> Response:
    async with store.session() as session:
        job = await session.jobs.get(job_id)
        if job is None:
            raise not_found()
        attempts = await session.jobs.attempts(job_id)
        # A pending job that never starts is the first thing an admin asks about here.
        paused = any(t["paused"] for t in await session.job_types.switches() if t["name"] == job["type"])
    return templates.TemplateResponse(
        request,
        "dashboard_job.html",
        {"job": job, "attempts": attempts, "type_paused": paused, "now": datetime.now(UTC)},
    )


@router.get("/find", response_class=HTMLResponse)
async def find_job(
    request: Request, _who: ViewerDep, store: StoreDep, text: Annotated[str, Query(alias="id")] = ""
) -> Response:
    """The inspector's content for what was typed into "find a job" (aijobs.api.id_search):
    the job when one matches, a list to pick from when several do, else the reason."""
    try:
        search = id_search.parse(text)
    except id_search.IdSearchError as exc:
        return find_answer(request, str(exc), status=422)
    if search.exact is not None:
        async with store.session() as session:
            found = await session.jobs.get(search.exact)
        if found is None:
            return find_answer(request, f"no job with id {search.exact}", status=404)
        return await inspect_job(request, search.exact, _who, store)
    matches: dict[UUID, FoundJobRow] = {}
    async with store.session() as session:
        for part in search.parts:
            low, high = part.bounds()
            rows = await session.jobs.find_by_id_part(
                low, high, part.suffix, scan=FIND_SCAN, limit=FIND_LIMIT + 1
            )
            matches.update((r["id"], r) for r in rows)
    if len(matches) == 1:
        return await inspect_job(request, next(iter(matches)), _who, store)
    if not matches:
        where = "" if all(p.prefix for p in search.parts) else f" among the newest {FIND_SCAN:,} jobs"
        return find_answer(request, f"no job id matches {text.strip()!r}{where}", status=404)
    rows = sorted(matches.values(), key=lambda r: r["id"], reverse=True)
    return templates.TemplateResponse(
        request,
        "dashboard_find.html",
        {"rows": rows[:FIND_LIMIT], "more": len(rows) > FIND_LIMIT, "text": text.strip()},
    )


def find_answer(request: Request, message: str, *, status: int) -> Response:
    return templates.TemplateResponse(
        request, "dashboard_find.html", {"rows": [], "message": message}, status_code=status
    )


@router.post("/jobs/{job_id}/requeue")
async def requeue(request: Request, job_id: UUID, who: ViewerDep, store: StoreDep) -> JSONResponse:
    """The admin API's requeue (a new charged job with retry_of), behind the dashboard's auth."""
    if request.headers.get("x-dashboard") != "1":
        raise ProblemError(403, "missing X-Dashboard header", code="forbidden")
    return await admin_routes.requeue(job_id, who.principal, store)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: UUID, _who: ViewerDep, store: StoreDep) -> JSONResponse:
    """Cancel a pending job (refunded at once) or ask a running one to stop, as `aijobs jobs
    cancel` does; a finished job is left as it is. Answers the job's row after the request."""
    if request.headers.get("x-dashboard") != "1":
        raise ProblemError(403, "missing X-Dashboard header", code="forbidden")
    async with store.session() as session:
        row = await session.jobs.cancel(job_id)
    if row is None:
        raise not_found()
    return JSONResponse(
        {"id": str(row["id"]), "status": row["status"], "cancel_requested": row["cancel_requested"]}
    )


@router.post("/job-types/{name}/{action}")
async def pause_or_resume(
    request: Request,
    name: Annotated[str, Path(max_length=63, pattern=r"^[a-z][a-z0-9_]*$")],
    action: Literal["pause", "resume"],
    _who: ViewerDep,
    store: StoreDep,
) -> JSONResponse:
    """Pause a job type (its pending jobs wait, unclaimed; creations still accepted) or resume
    it, as `aijobs types-pause`/`types-resume` do. Answers the type's switches."""
    if request.headers.get("x-dashboard") != "1":
        raise ProblemError(403, "missing X-Dashboard header", code="forbidden")
    state = await admin_routes.set_job_type_switches(store, name, paused=action == "pause")
    return JSONResponse(state.model_dump())


@router.post("/webhooks/deliveries/{delivery_id}/replay")
async def replay_delivery(request: Request, delivery_id: UUID, _who: ViewerDep, store: StoreDep) -> Response:
    """Send a webhook delivery again (same id and body), behind the dashboard's auth."""
    if request.headers.get("x-dashboard") != "1":
        raise ProblemError(403, "missing X-Dashboard header", code="forbidden")
    async with store.session() as session:
        if not await session.webhooks.replay_any(delivery_id):
            raise not_found("webhook delivery")
    return Response(status_code=202)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, error: str | None = None) -> Response:
    return templates.TemplateResponse(request, "dashboard_login.html", {"error": error})


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("key") or [""])[0].strip()
    try:
        await check_token(state, token)
    except ProblemError as exc:
        return templates.TemplateResponse(
            request, "dashboard_login.html", {"error": exc.detail}, status_code=exc.status
        )
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/dashboard",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response
