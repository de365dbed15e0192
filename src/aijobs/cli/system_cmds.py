"""`aijobs migrate`, `aijobs worker`, `aijobs stats`, `aijobs dev`."""

from __future__ import annotations

import asyncio
import secrets
from uuid import UUID

import typer
from pydantic import SecretStr

from aijobs import eventloop
from aijobs.api.app import create_app
from aijobs.api.server import EmbeddedServer, server_config
from aijobs.api.tokens import mint_token
from aijobs.cli.app import (
    app,
    database,
    echo_json,
    open_store,
    require_migrated,
    run_async,
    settings_or_exit,
)
from aijobs.config import Settings
from aijobs.db.migrate import DeploymentSettings, MigrationError
from aijobs.db.migrate import migrate as apply_migrations
from aijobs.db.store import Store
from aijobs.jobs import registry
from aijobs.monitoring.http import serve_metrics
from aijobs.monitoring.stats import collect as collect_stats
from aijobs.monitoring.view import render as render_stats
from aijobs.providers.factory import build_provider
from aijobs.worker.runner import Worker

#: The account `aijobs dev` creates, so the quick start has someone to charge.
DEMO_USER = UUID("00000000-0000-4000-8000-000000000001")
DEMO_CREDITS = 100


def job_type_rows() -> list[tuple[str, int, float]]:
    return [(jt.name, jt.cost, jt.timeout_seconds) for jt in registry().values()]


def migrate_or_exit(url: str, settings: Settings) -> list[str]:
    try:
        return apply_migrations(
            url,
            job_types=job_type_rows(),
            settings=DeploymentSettings(max_jobs_in_flight_per_user=settings.in_flight_quota),
        )
    except MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("migrate")
def migrate() -> None:
    """Apply pending migrations (safe to run twice, and from several machines at once)."""
    settings = settings_or_exit()
    with database(settings) as url:
        applied = migrate_or_exit(url, settings)
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


async def run_worker(settings: Settings, url: str) -> None:
    store = await Store.open(url, min_size=2, max_size=max(settings.db_pool_size, 3), name="aijobs-worker")
    provider = build_provider(settings)
    try:
        worker = Worker(settings, store, provider, url)
        if settings.metrics_port is not None:
            try:
                serve_metrics(settings.metrics_port, worker.metrics)
            except OSError as exc:  # in use, or not ours to bind
                typer.echo(
                    f"error: metrics port {settings.metrics_port} (--metrics-port / METRICS_PORT): "
                    f"{exc.strerror or exc}",
                    err=True,
                )
                raise typer.Exit(1) from None
        worker.install_signal_handlers()
        await worker.run()
    finally:
        await provider.aclose()
        await store.close()


@app.command("worker")
def worker(
    concurrency: int = typer.Option(None, "--concurrency", min=1, max=1000, help="WORKER_CONCURRENCY"),
    log_format: str = typer.Option(None, "--log-format", help="text | json"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535, help="Serve /metrics here."),
) -> None:
    """Run a worker until SIGTERM/SIGINT (then drain gracefully; a second signal exits at once)."""
    settings = settings_or_exit(
        worker_concurrency=concurrency, log_format=log_format, metrics_port=metrics_port
    )
    with database(settings) as url:
        require_migrated(url)
        eventloop.run(run_worker(settings, url), settings.event_loop)


@app.command("stats")
def stats(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    watch: float = typer.Option(None, "--watch", min=0.5, help="Refresh every N seconds until Ctrl-C."),
) -> None:
    """Queue depth, throughput, latencies, errors, providers and workers over 1/5/15/60 minutes."""
    settings = settings_or_exit()
    with database(settings) as url:
        require_migrated(url)
        run_async(lambda: show_stats(url, settings, as_json=as_json, watch=watch))


async def show_stats(url: str, settings: Settings, *, as_json: bool, watch: float | None) -> None:
    async with open_store(url, settings) as store:
        while True:
            async with store.session() as session:
                figures = await collect_stats(
                    session, dead_after_seconds=settings.lease_seconds, include_summary=True
                )
            if as_json:
                echo_json(figures.as_json())
            else:
                typer.echo(("\x1b[2J\x1b[H" if watch else "") + render_stats(figures))
            if not watch:
                return
            await asyncio.sleep(watch)


async def ensure_demo_account(url: str, settings: Settings) -> int:
    async with open_store(url, settings) as store, store.transaction() as session:
        if await session.accounts.create(DEMO_USER):
            return await session.accounts.grant_credits(DEMO_USER, DEMO_CREDITS, "demo credits")
        account = await session.accounts.get(DEMO_USER)
        return account.balance if account else 0


@app.command("dev")
def dev() -> None:
    """Everything in one process: embedded database, migrations, a demo account, worker and API."""
    settings = settings_or_exit()
    if settings.jwt_secret is None:
        # Dev only: a throwaway secret so the printed token and the page's mint button work.
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(32))})
        typer.echo("JWT_SECRET is not set: using a random one for this process (tokens die with it)")
    with database(settings) as url:
        migrate_or_exit(url, settings)
        balance = asyncio.run(ensure_demo_account(url, settings))
        typer.echo(f"demo account {DEMO_USER} has {balance} credits")
        typer.echo(
            f"try: aijobs enqueue ai_generation --user {DEMO_USER} "
            '--payload \'{"review_text": "Great service!", "tone": "friendly"}\''
        )
        eventloop.run(run_dev(settings.model_copy(update={"database_url": url}), url), settings.event_loop)


async def run_dev(settings: Settings, url: str) -> None:
    """The API and the worker in one event loop. The worker owns the signals: when it has
    drained after SIGINT/SIGTERM, the API stops too."""
    assert settings.jwt_secret is not None
    app_ = create_app(settings, dev_user=DEMO_USER)
    server = EmbeddedServer(server_config(app_, settings.api_host, settings.api_port, settings.log_level))
    api_task = asyncio.create_task(server.serve(), name="api")
    while not server.started and not api_task.done():  # noqa: ASYNC110 (uvicorn exposes a bool, not an event)
        await asyncio.sleep(0.05)
    if api_task.done():
        await api_task  # startup failed (port in use, ...): raise its error
        return
    dev_token = mint_token(
        settings.jwt_secret.get_secret_value(),
        DEMO_USER,
        ttl_seconds=12 * 3600,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    base = f"http://{settings.api_host}:{settings.api_port}"
    typer.echo(f"API: {base}  ·  open {base}/api-test  ·  OpenAPI {base}/docs")
    typer.echo(f"dev token for the demo user (12 h): {dev_token}")
    try:
        await run_worker(settings, url)
    finally:
        server.should_exit = True
        await api_task
