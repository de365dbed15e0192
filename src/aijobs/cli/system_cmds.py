"""`aijobs migrate`, `aijobs worker`, `aijobs stats`, `aijobs dev`."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

import typer

from aijobs.cli.app import app, database, echo_json, open_store, run_async, settings_or_exit
from aijobs.config import Settings
from aijobs.db.migrate import MigrationError, pending
from aijobs.db.migrate import migrate as apply_migrations
from aijobs.db.store import Store
from aijobs.jobs import registry
from aijobs.providers.factory import build_provider
from aijobs.worker.runner import Worker

#: The account `aijobs dev` creates, so the quick start has someone to charge.
DEMO_USER = UUID("00000000-0000-4000-8000-000000000001")
DEMO_CREDITS = 100


def job_type_rows() -> list[tuple[str, int, float]]:
    return [(jt.name, jt.cost, jt.timeout_seconds) for jt in registry().values()]


def migrate_or_exit(url: str) -> list[str]:
    try:
        return apply_migrations(url, job_types=job_type_rows())
    except MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("migrate")
def migrate() -> None:
    """Apply pending migrations (safe to run twice, and from several machines at once)."""
    settings = settings_or_exit()
    with database(settings) as url:
        applied = migrate_or_exit(url)
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


async def run_worker(settings: Settings, url: str) -> None:
    store = await Store.open(url, min_size=2, max_size=max(settings.db_pool_size, 3), name="aijobs-worker")
    provider = build_provider(settings)
    try:
        worker = Worker(settings, store, provider, url)
        worker.install_signal_handlers()
        await worker.run()
    finally:
        await provider.aclose()
        await store.close()


@app.command("worker")
def worker(
    concurrency: int = typer.Option(None, "--concurrency", min=1, max=1000, help="WORKER_CONCURRENCY"),
    log_format: str = typer.Option(None, "--log-format", help="text | json"),
) -> None:
    """Run a worker until SIGTERM/SIGINT (then drain gracefully; a second signal exits at once)."""
    settings = settings_or_exit(worker_concurrency=concurrency, log_format=log_format)
    with database(settings) as url:
        missing = pending(url)
        if missing:
            typer.echo(
                f"error: the database lacks migrations {', '.join(missing)}; run `aijobs migrate`", err=True
            )
            raise typer.Exit(2)
        asyncio.run(run_worker(settings, url))


@app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The seed's status query (count and average processing time per status) and queue depth."""
    settings = settings_or_exit()

    async def go() -> None:
        with database(settings) as url:
            async with open_store(url, settings) as store, store.session() as session:
                summary = await session.status_summary()
                depth = await session.queue_depth()
        if as_json:
            echo_json({"status": summary, "queue_depth": depth})
            return
        typer.echo(f"{'status':<12}{'count':>10}{'avg processing (s)':>22}")
        for row in summary:
            avg = row["avg_processing_time"]
            typer.echo(
                f"{row['status']:<12}{row['count']:>10}{(f'{avg:.3f}' if avg is not None else '-'):>22}"
            )
        typer.echo("\nqueue depth:")
        for row in depth or [{"type": "-", "status": "-", "count": 0}]:
            typer.echo(f"  {row['type']:<20}{row['status']:<12}{row['count']:>8}")

    run_async(go)


async def ensure_demo_account(url: str, settings: Settings) -> int:
    async with open_store(url, settings) as store, store.transaction() as session:
        if await session.create_account(DEMO_USER):
            return await session.grant_credits(DEMO_USER, DEMO_CREDITS, "demo credits")
        account = await session.get_account(DEMO_USER)
        return account.balance if account else 0


@app.command("dev")
def dev() -> None:
    """Everything in one process: embedded database, migrations, a demo account, worker."""
    settings = settings_or_exit()
    with database(settings) as url:
        migrate_or_exit(url)
        balance = asyncio.run(ensure_demo_account(url, settings))
        typer.echo(f"demo account {DEMO_USER} has {balance} credits")
        typer.echo(
            f"try: aijobs enqueue ai_generation --user {DEMO_USER} "
            '--payload \'{"review_text": "Great service!", "tone": "friendly"}\''
        )
        asyncio.run(run_worker(settings, url))


def new_user_id() -> UUID:
    return uuid.uuid4()
