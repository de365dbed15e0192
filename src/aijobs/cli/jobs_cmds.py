"""`aijobs enqueue`, `aijobs enqueue-batch` and `aijobs jobs list|show|cancel|retry`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TextIO
from uuid import UUID

import typer
from pydantic import ValidationError

from aijobs.cli.app import (
    app,
    echo_json,
    jobs_app,
    owner_session,
    parse_json_option,
    run_async,
    settings_or_exit,
)
from aijobs.errors import AijobsError
from aijobs.jobs import max_attempts_for
from aijobs.queue.enqueue import JobSpec, enqueue_many, retry_as_new_job, validate_payload
from aijobs.queue.enqueue import enqueue as enqueue_job
from aijobs.queue.requests import JobRequest
from aijobs.states import UNCANCELLABLE_STATUSES, JobStatus


def _check_key(key: str | None) -> str | None:
    """The key's bounds (the database's `idempotency_key` domain), named as an option error."""
    if key is not None and not 1 <= len(key) <= 255:
        raise typer.BadParameter(f"must be 1-255 characters (got {len(key)})")
    return key


@app.command("enqueue")
def enqueue(
    job_type: str = typer.Argument(..., help="ai_generation | review_processing | prompt_analysis | ..."),
    user: UUID = typer.Option(..., "--user", help="The account to charge."),
    payload: str = typer.Option(..., "--payload", help="The job's payload as JSON."),
    priority: int = typer.Option(
        0, "--priority", min=-100, max=100, help="Higher runs first among the user's own jobs."
    ),
    max_attempts: int = typer.Option(None, "--max-attempts", min=1, max=100),
    idempotency_key: str = typer.Option(
        None, "--idempotency-key", callback=_check_key, help="1-255 characters; a repeat returns the job."
    ),
    tenant: UUID = typer.Option(
        None, "--tenant", help="Whose fair share and running limit the jobs count in (default: the user)."
    ),
) -> None:
    """Create a job, consuming the type's credits atomically."""
    settings = settings_or_exit()
    body = parse_json_option(payload, "--payload")

    async def go() -> None:
        async with owner_session(settings) as session:
            created = await enqueue_job(
                session,
                user_id=user,
                job_type=job_type,
                payload=body,
                priority=priority,
                max_attempts=max_attempts or max_attempts_for(job_type, settings.max_attempts),
                idempotency_key=idempotency_key,
                tenant=tenant,
            )
        echo_json(asdict(created))

    run_async(go)


#: Invalid lines `enqueue-batch` names one by one before it only counts the rest.
MAX_REPORTED_LINES = 20
#: Files at least this large are read under a progress bar (on a terminal only).
PROGRESS_BYTES = 1 << 20


@app.command("enqueue-batch")
def enqueue_batch(
    file: str = typer.Argument(..., help='JSON Lines, one job per line ("-" reads standard input).'),
    user: UUID = typer.Option(..., "--user", help="The account to charge."),
    ids: bool = typer.Option(False, "--ids", help="Also print the id of every job created."),
    tenant: UUID = typer.Option(
        None, "--tenant", help="Whose fair share and running limit the jobs count in (default: the user)."
    ),
) -> None:
    """Create every job in FILE or none, charged together: one statement, one transaction.

    Each line is what `POST /api/jobs/batch` takes per job: {"type": ..., "payload": {...}}
    with optional priority, run_at and max_attempts. Every bad line is named (the first
    20, then how many more) and nothing is created; so is a balance short of the total.
    Prints a summary (created, cost, balance); `--ids` adds the ids.
    """
    settings = settings_or_exit()
    if file == "-":
        specs = _read_job_lines(sys.stdin, "<stdin>", settings.max_attempts)
    else:
        try:
            path = Path(file)
            size = path.stat().st_size
            with path.open(encoding="utf-8") as f:
                if size < PROGRESS_BYTES:
                    specs = _read_job_lines(f, file, settings.max_attempts)
                else:
                    with typer.progressbar(length=size, label=f"reading {file}", file=sys.stderr) as bar:
                        specs = _read_job_lines(f, file, settings.max_attempts, progress=bar.update)
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"error: cannot read {file}: {exc}", err=True)
            raise typer.Exit(2) from None

    async def go() -> None:
        async with owner_session(settings) as session:
            created = await enqueue_many(session, user_id=user, jobs=specs, tenant=tenant)
        summary: dict[str, object] = {
            "created": len(created),
            "cost": sum(c.cost for c in created),
            "balance": created[-1].balance if created else None,
        }
        if ids:
            summary["ids"] = [str(c.id) for c in created]
        echo_json(summary)

    run_async(go)


def _read_job_lines(
    lines: TextIO, name: str, default_attempts: int, progress: Callable[[int], object] | None = None
) -> list[JobSpec]:
    """Every non-blank line as a job, or exit 2 naming every bad line (up to a bound) and field."""
    specs = []
    bad = 0
    for number, line in enumerate(lines, start=1):
        if progress is not None:
            progress(len(line.encode()))
        if not line.strip():
            continue
        reason = None
        try:
            job = JobRequest.model_validate_json(line)
            validate_payload(job.type, job.payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "line"
            reason = f"{field}: {first['msg']}"
        except AijobsError as exc:  # the payload does not fit its type, or no such type
            reason = exc.message
        if reason is not None:
            bad += 1
            if bad <= MAX_REPORTED_LINES:
                typer.echo(f"error: {name} line {number}: {reason}", err=True)
            continue
        specs.append(
            JobSpec(
                job.type,
                job.payload,
                job.priority,
                job.run_at,
                job.max_attempts or max_attempts_for(job.type, default_attempts),
            )
        )
    if bad:
        if bad > MAX_REPORTED_LINES:
            typer.echo(f"error: {name}: and {bad - MAX_REPORTED_LINES} more invalid lines", err=True)
        typer.echo(f"error: {name}: {bad} invalid line(s); nothing was created", err=True)
        raise typer.Exit(2)
    if not specs:
        typer.echo(f"error: {name} holds no jobs", err=True)
        raise typer.Exit(2)
    return specs


@jobs_app.command("list")
def list_jobs(
    user: UUID = typer.Option(None, "--user"),
    status: JobStatus | None = typer.Option(None, "--status"),
    job_type: str = typer.Option(None, "--type"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
) -> None:
    """Newest jobs first."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            rows = await session.jobs.page(user_id=user, status=status, type=job_type, limit=limit)
        for row in rows:
            typer.echo(
                f"{row['id']}  {row['status']:<10}  {row['type']:<18}  attempts {row['attempts']}/"
                f"{row['max_attempts']}  {row['created_at']:%Y-%m-%d %H:%M:%S}"
            )

    run_async(go)


@jobs_app.command("show")
def show(job_id: UUID) -> None:
    """A job with its attempts."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            job = await session.jobs.get(job_id)
            if job is None:
                typer.echo(f"error: no job {job_id}", err=True)
                raise typer.Exit(1)
            attempts = await session.jobs.attempts(job_id)
        echo_json({**job, "attempt_history": attempts})

    run_async(go)


@jobs_app.command("cancel")
def cancel(job_id: UUID) -> None:
    """Cancel a pending job (refunded at once) or ask a running one to stop. A job that has
    completed or failed is refused (exit 1), as the API refuses it (409)."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            row = await session.jobs.cancel(job_id)
        if row is None:
            typer.echo(f"error: no job {job_id}", err=True)
            raise typer.Exit(1)
        if row["status"] in UNCANCELLABLE_STATUSES:
            typer.echo(f"error: job {job_id} is already {row['status']}; nothing to cancel", err=True)
            raise typer.Exit(1)
        echo_json(row)

    run_async(go)


@jobs_app.command("retry")
def retry(job_id: UUID) -> None:
    """Run a failed or cancelled job again as a new job (charged again; the old one keeps its refund)."""
    settings = settings_or_exit()

    async def go() -> None:
        async with owner_session(settings) as session:
            job = await session.jobs.get(job_id)
            if job is None:
                typer.echo(f"error: no job {job_id}", err=True)
                raise typer.Exit(1)
            created = await retry_as_new_job(session, job)
        echo_json(asdict(created))

    run_async(go)
