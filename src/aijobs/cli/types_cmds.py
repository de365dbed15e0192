"""`aijobs types`: the job types this process loads (built-ins, AIJOBS_JOB_TYPES, entry points).

What an operator runs to see that a deployment's own types are found before starting a worker:
a type that fails to load stops this command as it would stop the worker, with the reason.
"""

from __future__ import annotations

import typer

from aijobs.cli.app import app, echo_json, settings_or_exit
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
