"""`aijobs types`: the job types this process loads (built-ins, AIJOBS_JOB_TYPES, entry points).

What an operator runs to see that a deployment's own types are found before starting a worker:
a type that fails to load stops this command as it would stop the worker, with the reason.
"""

from __future__ import annotations

import typer

from aijobs.cli.app import app, echo_json, owner_session, run_async, settings_or_exit
from aijobs.jobs import registry


@app.command("types")
def types(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the job types: name, credit cost, time limit, attempts, description."""
    settings = settings_or_exit()
    rows: list[dict[str, object]] = [
        {
            "name": jt.name,
            "cost": jt.cost,
            "timeout_seconds": jt.timeout_seconds,
            "max_attempts": jt.retry.max_attempts or settings.max_attempts,
            "description": jt.description,
        }
        for jt in registry().values()
    ]
    if as_json:
        echo_json(rows)
        return
    width = max(len(str(r["name"])) for r in rows)
    for r in rows:
        typer.echo(
            f"{r['name']!s:<{width}}  {r['cost']!s:>3} cr  {r['timeout_seconds']:>6g}s  "
            f"{r['max_attempts']:>3}x  {r['description']}"
        )


@app.command("types-disable")
def disable(name: str = typer.Argument(..., help="The job type to disable.")) -> None:
    """Refuse new jobs of a type in this deployment; its pending jobs still run."""
    _switch(name, enabled=False)


@app.command("types-enable")
def enable(name: str = typer.Argument(..., help="The job type to enable again.")) -> None:
    """Accept jobs of a disabled type again."""
    _switch(name, enabled=True)


@app.command("types-pause")
def pause(name: str = typer.Argument(..., help="The job type to pause.")) -> None:
    """Stop workers claiming a type's pending jobs: they wait, kept and charged; new jobs of it
    are still accepted and wait too."""
    _switch(name, paused=True)


@app.command("types-resume")
def resume(name: str = typer.Argument(..., help="The job type to resume.")) -> None:
    """Let workers claim a paused type's jobs again, in their turn."""
    _switch(name, paused=False)


@app.command("types-limit")
def limit(
    name: str = typer.Argument(..., help="The job type to limit."),
    max_running_per_tenant: int = typer.Option(
        ...,
        "--max-running-per-tenant",
        min=0,
        max=2_147_483_647,
        help="The most jobs of this type one tenant may run at once (0: no limit of the type's own).",
    ),
) -> None:
    """Limit how many jobs of a type each tenant may have running at once, across all workers;
    the tenant's other jobs run meanwhile."""
    _switch(name, max_running_per_tenant=max_running_per_tenant)


def _switch(
    name: str,
    *,
    enabled: bool | None = None,
    paused: bool | None = None,
    max_running_per_tenant: int | None = None,
) -> None:
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            row = await session.job_types.switch(
                name, enabled=enabled, paused=paused, max_running_per_tenant=max_running_per_tenant
            )
        if row is None:
            typer.echo(f"error: the database has no job type {name!r} (run `aijobs migrate`?)", err=True)
            raise typer.Exit(1)
        state = "enabled" if row["enabled"] else "disabled"
        cap = row["max_running_per_tenant"]
        running = f"at most {cap} running per tenant" if cap is not None else "no limit per tenant"
        typer.echo(f"{name}: {state}, {'paused' if row['paused'] else 'not paused'}, {running}")

    run_async(go)
