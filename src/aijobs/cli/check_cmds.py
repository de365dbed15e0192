"""`aijobs check`: verify the global invariants against the database, as an operator would.

Prints each check and each violation; exits 1 when any invariant is broken (so it can gate a
deploy or page someone), 0 when all hold. `--json` prints the same report for machines.
"""

from __future__ import annotations

import typer

from aijobs.cli.app import (
    app,
    database,
    echo_json,
    open_store,
    require_migrated,
    run_async,
    settings_or_exit,
)
from aijobs.queue.invariants import Report
from aijobs.queue.invariants import check as check_invariants


@app.command("check")
def check(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="Violations listed per check."),
) -> None:
    """Check the invariants (no job lost, ledger = balance, one debit, ≤ 1 refund, completed once)."""
    settings = settings_or_exit()

    with database(settings) as url:
        require_migrated(url)

        async def go() -> Report:
            async with open_store(url, settings, name="aijobs-check") as store:
                return await check_invariants(store, limit=limit)

        report = run_async(go)
    if as_json:
        echo_json(report.as_json())
    else:
        for line in report.lines():
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
