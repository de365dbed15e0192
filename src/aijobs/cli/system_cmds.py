"""`aijobs migrate`, `aijobs worker`, `aijobs stats`, `aijobs dev`."""

from __future__ import annotations

import asyncio
import functools
import socket
from uuid import UUID

import typer
from pydantic import SecretStr

from aijobs import eventloop
from aijobs.api.tokens import dev_secret, mint_token
from aijobs.cli.app import (
    app,
    database,
    echo_json,
    listen_or_exit,
    open_store,
    require_migrated,
    run_async,
    settings_or_exit,
)
from aijobs.config import ConfigError, Settings
from aijobs.db.migrate import DeploymentSettings, MigrationError
from aijobs.db.migrate import migrate as apply_migrations
from aijobs.db.reachable import wait_until_reachable
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
    if settings.database_pool_mode == "transaction":
        # Its advisory lock is a session's: through a transaction pooler, the unlock could
        # reach another backend and leave the lock held, and the next migrate waiting forever.
        typer.echo(
            "error: aijobs migrate needs a session: run it with DATABASE_URL set to the direct "
            "(or session-mode) URL and DATABASE_POOL_MODE=session",
            err=True,
        )
        raise typer.Exit(2)
    try:
        return apply_migrations(
            url,
            job_types=job_type_rows(),
            settings=DeploymentSettings(
                max_jobs_in_flight_per_user=settings.in_flight_quota,
                max_running_per_tenant=settings.running_limit,
                tenant_claim=settings.tenant_claim,
            ),
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
    # The provider first: a missing extra or a bad setting is one line before anything opens.
    try:
        provider = build_provider(settings)
    except ConfigError as exc:
        typer.echo(f"aijobs: {exc}", err=True)
        raise typer.Exit(2) from None
    # Not waiting for the first connection: the worker's start retries until the database answers.
    store = await Store.open(
        url,
        min_size=2,
        max_size=max(settings.db_pool_size, 3),
        name="aijobs-worker",
        wait=False,
        prepare=settings.prepared_statements,
    )
    try:
        worker = Worker(settings, store, provider, settings.listen_url(url))
        if settings.metrics_port is not None:
            try:
                token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
                serve_metrics(settings.metrics_port, worker.metrics, token=token)
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
        # A database restarting while the worker starts is waited for, as a running worker
        # rides out the same fault.
        wait_until_reachable(url, timeout=settings.db_start_timeout_seconds, what="the worker's start")
        require_migrated(url)
        eventloop.run(run_worker(settings, url), settings.event_loop)


@app.command("stats")
def stats(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    watch: float = typer.Option(None, "--watch", min=0.5, help="Refresh every N seconds until Ctrl-C."),
    tenants: int = typer.Option(
        10, "--tenants", min=0, max=500, help="How many tenants to show, most jobs pending first."
    ),
) -> None:
    """Queue depth (and the tenants with the most jobs waiting, with their running jobs and
    limits), throughput, latencies, errors, providers and workers over 1/5/15/60 minutes."""
    settings = settings_or_exit()
    with database(settings) as url:
        require_migrated(url)
        run_async(lambda: show_stats(url, settings, as_json=as_json, watch=watch, tenants=tenants))


async def show_stats(
    url: str, settings: Settings, *, as_json: bool, watch: float | None, tenants: int = 10
) -> None:
    async with open_store(url, settings) as store:
        while True:
            async with store.session() as session:
                figures = await collect_stats(
                    session, dead_after_seconds=settings.lease_seconds, include_summary=True, tenants=tenants
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
def dev(
    host: str = typer.Option(None, "--host", help="API_HOST (default 127.0.0.1)"),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="API_PORT (default 8000)"),
) -> None:
    """Everything in one process: embedded database, migrations, a demo account, worker and API."""
    settings = settings_or_exit(api_host=host, api_port=port)
    # Bound before anything starts, and handed to uvicorn: a port in use is one line and
    # exit 1, not uvicorn's exit inside a task (two tracebacks), after the database started.
    with listen_or_exit(settings.api_host, settings.api_port) as sock:
        if settings.jwt_secret is None:
            secret, path, created = dev_secret()
            settings = settings.model_copy(update={"jwt_secret": SecretStr(secret)})
            typer.echo(
                f"JWT_SECRET is not set: {'created' if created else 'using'} the dev secret in {path}"
                " (`aijobs token` here signs with it too)",
                err=True,
            )
        with database(settings) as url:
            migrate_or_exit(url, settings)
            balance = asyncio.run(ensure_demo_account(url, settings))
            typer.echo(f"demo account {DEMO_USER} has {balance} credits")
            typer.echo(
                f"try: aijobs enqueue ai_generation --user {DEMO_USER} "
                '--payload \'{"review_text": "Great service!", "tone": "friendly"}\''
            )
            eventloop.run(
                run_dev(settings.model_copy(update={"database_url": url}), url, sock), settings.event_loop
            )


async def run_dev(settings: Settings, url: str, sock: socket.socket) -> None:
    """The API and the worker in one event loop. The worker owns the signals: when it has
    drained after SIGINT/SIGTERM, the API stops too."""
    from aijobs.api.app import create_app  # FastAPI only for the commands that serve
    from aijobs.api.server import EmbeddedServer, server_config

    assert settings.jwt_secret is not None
    app_ = create_app(settings, dev_user=DEMO_USER)
    server = EmbeddedServer(server_config(app_, settings.api_host, settings.api_port, settings.log_level))
    api_task = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    while not server.started and not api_task.done():  # noqa: ASYNC110 (uvicorn exposes a bool, not an event)
        await asyncio.sleep(0.05)
    if api_task.done():
        await api_task  # startup failed: raise its error
        return
    secret = settings.jwt_secret.get_secret_value()
    mint = functools.partial(
        mint_token,
        secret,
        DEMO_USER,
        ttl_seconds=12 * 3600,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    host, port = sock.getsockname()[:2]
    base = f"http://{host}:{port}"
    typer.echo(f"API: {base}  ·  open {base}/api-test  ·  OpenAPI {base}/docs")
    typer.echo(f"dev token for the demo user (12 h): {mint()}")
    typer.echo(
        f"dashboard: {base}/dashboard/login  ·  sign in with this admin token (12 h): {mint(admin=True)}"
    )
    try:
        await run_worker(settings, url)
    finally:
        server.should_exit = True
        await api_task
