"""Comparing this process's job types with the database's `job_types` table.

`aijobs migrate` copies names, costs and time limits from the registry into the table; a worker
started with other types (an AIJOBS_JOB_TYPES left out, a package not installed, a release
ahead of the last migrate) says at start which types disagree and how to fix it, instead of
charging one cost and enforcing another, or leaving jobs that no worker will take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aijobs.jobs.base import JobType


@dataclass(frozen=True)
class StoredJobType:
    """One row of `job_types`, with how many of its jobs are waiting."""

    name: str
    cost: int
    timeout_seconds: float
    enabled: bool
    paused: bool = False
    pending: int = 0


class JobTypeCatalog(Protocol):
    """Where a worker reads the database's job types (the `job_types_list` query)."""

    async def stored_job_types(self) -> list[StoredJobType]: ...


@dataclass(frozen=True)
class Mismatch:
    name: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"job type {self.name!r}: {self.problem}; {self.fix}"


MIGRATE = "run `aijobs migrate` with this process's AIJOBS_JOB_TYPES (and packages) to sync the database"


def compare(local: Mapping[str, JobType], stored: Iterable[StoredJobType]) -> list[Mismatch]:
    """Every way `local` (this process's registry) and `stored` (the table) disagree, by name."""
    rows = {row.name: row for row in stored}
    found: list[Mismatch] = []
    for name, jt in local.items():
        row = rows.get(name)
        if row is None:
            found.append(
                Mismatch(
                    name, "registered here but not in the database, so no job of it can be created", MIGRATE
                )
            )
            continue
        diffs = []
        if row.cost != jt.cost:
            diffs.append(f"costs {jt.cost} credits here but {row.cost} in the database")
        if abs(row.timeout_seconds - jt.timeout_seconds) > 1e-3:
            diffs.append(
                f"time limit {jt.timeout_seconds:g}s here but {row.timeout_seconds:g}s in the database"
            )
        if diffs:
            found.append(Mismatch(name, " and ".join(diffs), MIGRATE))
    for name, row in rows.items():
        if name not in local and row.enabled:
            waiting = f"{row.pending} job(s) of it wait" if row.pending else "its jobs would wait"
            found.append(
                Mismatch(
                    name,
                    f"in the database but not registered in this process: {waiting} for a worker that has it",
                    "add its module to AIJOBS_JOB_TYPES or install its package here, "
                    "or disable the type if no worker should run it",
                )
            )
    return found
