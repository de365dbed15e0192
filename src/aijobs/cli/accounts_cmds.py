"""`aijobs accounts create|grant|weight|limit|show`."""

from __future__ import annotations

import uuid
from uuid import UUID

import typer

from aijobs.cli.app import (
    accounts_app,
    echo_json,
    owner_session,
    run_async,
    settings_or_exit,
)
from aijobs.config import PG_INT_MAX
from aijobs.queue.requests import MAX_CREDIT_GRANT

#: The most one grant may add: the admin API's limit (a bigint balance stays far from overflow).
MAX_GRANT = MAX_CREDIT_GRANT


@accounts_app.command("create")
def create(
    user: UUID = typer.Option(None, "--user", help="User id (uuid); a new one if omitted."),
    credits: int = typer.Option(0, "--credits", min=0, max=MAX_GRANT, help="Initial credits to grant."),
) -> None:
    """Create an account (optionally with credits)."""
    settings = settings_or_exit()
    user_id = user or uuid.uuid4()

    async def go() -> None:
        async with owner_session(settings, transaction=True) as session:
            await session.accounts.create(user_id)
            if credits:
                await session.accounts.grant_credits(user_id, credits, "initial credits")
            account = await session.accounts.get(user_id)
        echo_json({"user_id": user_id, "balance": account.balance if account else 0})

    run_async(go)


@accounts_app.command("grant")
def grant(
    user: UUID = typer.Option(..., "--user"),
    amount: int = typer.Option(..., "--amount", min=1, max=MAX_GRANT),
    note: str = typer.Option("grant", "--note", help="1-200 characters, kept in the ledger."),
    key: str = typer.Option(
        None, "--key", help="Grant once per key (a payment's id): run again, it grants nothing more."
    ),
) -> None:
    """Add credits (a ledger row; the account is created if missing)."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            balance = await session.accounts.grant_credits(user, amount, note, key=key)
        echo_json({"user_id": user, "balance": balance})

    run_async(go)


@accounts_app.command("weight")
def weight(
    tenant: UUID = typer.Option(
        ..., "--tenant", "--user", help="The tenant: a user's id, or an organisation's (TENANT_CLAIM)."
    ),
    weight: int = typer.Option(..., "--weight", min=1, max=1000),
) -> None:
    """Set a tenant's fair share of the workers (a plan tier): weight 2 gets two turns for each
    turn of weight 1 while both have jobs waiting. Applies to jobs created from now on."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            stored = await session.accounts.set_weight(tenant, weight)
        echo_json({"tenant": tenant, "weight": stored})

    run_async(go)


@accounts_app.command("limit")
def limit(
    tenant: UUID = typer.Option(
        ..., "--tenant", "--user", help="The tenant: a user's id, or an organisation's (TENANT_CLAIM)."
    ),
    max_running: int = typer.Option(
        None, "--max-running", min=1, max=PG_INT_MAX, help="The most of its jobs running at once."
    ),
    default: bool = typer.Option(False, "--default", help="Use the deployment's MAX_RUNNING_PER_TENANT."),
) -> None:
    """Set how many of a tenant's jobs may run at once across all workers (a plan tier), or
    go back to the deployment's default. Jobs over it wait; other tenants' jobs run meanwhile."""
    if (max_running is not None) == default:
        typer.echo("error: give exactly one of --max-running N and --default", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            stored = await session.accounts.set_max_running(tenant, max_running)
        echo_json({"tenant": tenant, "max_running": stored})

    run_async(go)


@accounts_app.command("show")
def show(
    user: UUID = typer.Option(..., "--user"),
    ledger: int = typer.Option(10, "--ledger", min=0, max=10_000, help="Ledger rows to show, newest first."),
) -> None:
    """Balance and the latest ledger rows."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            account = await session.accounts.get(user)
            if account is None:
                typer.echo(f"error: no account for user {user}", err=True)
                raise typer.Exit(1)
            rows = await session.accounts.ledger(user, ledger)
        echo_json({"user_id": user, "balance": account.balance, "ledger": rows})

    run_async(go)
