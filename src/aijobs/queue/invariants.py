"""The global invariants of aijobs, checked against the database as it is now.

aijobs promises at-least-once execution with exactly-once effects. What that means for the
rows is written down here once, as SQL (db/queries/invariants.sql), and checked the same way
after every reliability test (`tests.support.invariants.assert_invariants`) and by operators
(`aijobs check`, which exits non-zero on any violation):

* no job lost: every job is pending, terminal (with `finished_at`), or processing with a
  lease — live, or expired and therefore taken back by the next rescuer; and no job has run
  more attempts than it was given;
* every account's balance equals the sum of its ledger and is never negative;
* exactly one debit per job, of its cost (retention prunes jobs, never the ledger: a debit
  whose job is gone is fine);
* at most one refund per job, of its cost, only for a failed or cancelled job — and such a
  job that cost something has had it;
* no job completed by two attempts: at most one `completed` attempt per job, exactly one
  for a completed job;
* every attempt row is closed, or is the open attempt of its job's current lease.

All checks read one repeatable-read snapshot, so a live system cannot produce a false alarm
by finishing a job between two checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aijobs.db.repos.invariants import INVARIANT_QUERIES, InvariantQuery
from aijobs.db.store import Store

#: What each check promises, as `aijobs check` prints it.
DESCRIPTIONS: dict[InvariantQuery, str] = {
    "inv_job_lost": "no job lost (pending, terminal, or processing under a lease)",
    "inv_attempt_budget": "no job ran more attempts than max_attempts",
    "inv_balance": "balance = sum(ledger) >= 0 for every account",
    "inv_debit": "exactly one debit per job, of its cost",
    "inv_refund": "at most one refund per job, only for failed/cancelled jobs, and always for them",
    "inv_completed_once": "no job completed by two attempts",
    "inv_attempt_open": "every attempt row closed or owned by its job's current lease",
}


def check_name(query_name: InvariantQuery) -> str:
    """The short name shown to people: `inv_debit` → `debit`."""
    return query_name.removeprefix("inv_")


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


@dataclass
class Report:
    """Every check's verdict, plus counts of what was looked at."""

    violations: list[Violation] = field(default_factory=list)
    #: violations per check, counted in full even where the listing was cut at `limit`
    totals: dict[str, int] = field(default_factory=dict)
    summary: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.totals.values())

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": [
                {"check": v.check, "subject": v.subject, "detail": v.detail} for v in self.violations
            ],
            "totals": self.totals,
            "summary": self.summary,
        }

    def lines(self) -> list[str]:
        """A human report: one line per check, then each listed violation."""
        out: list[str] = []
        for name in INVARIANT_QUERIES:
            short = check_name(name)
            n = self.totals.get(short, 0)
            out.append(f"{'✅' if n == 0 else '❌'} {DESCRIPTIONS[name]}: {n} violation(s)")
        out.extend(f"  {v}" for v in self.violations)
        listed = len(self.violations)
        if listed < self.total:
            out.append(f"  … and {self.total - listed} more")
        s = self.summary
        if s:
            out.append(
                f"checked {s['jobs']} jobs ({s['pending']} pending, {s['processing']} processing"
                f" [{s['expired_leases']} awaiting rescue], {s['completed']} completed,"
                f" {s['failed']} failed, {s['cancelled']} cancelled), {s['attempts']} attempts,"
                f" {s['accounts']} accounts, {s['ledger_rows']} ledger rows"
            )
        return out


async def check(store: Store, *, limit: int = 100) -> Report:
    """Run every check in one read-only snapshot; list at most `limit` violations per check."""
    report = Report()
    async with store.transaction() as session:
        await session.invariants.begin_snapshot()
        for name in INVARIANT_QUERIES:
            total, rows = await session.invariants.violations(name, limit)
            short = check_name(name)
            report.totals[short] = total
            report.violations.extend(Violation(short, subject, detail) for subject, detail in rows)
        report.summary = await session.invariants.summary()
    return report


async def check_url(url: str, *, limit: int = 100) -> Report:
    """`check` on a store of its own (one connection), for callers that hold none."""
    store = await Store.open(url, min_size=1, max_size=1, name="aijobs-check")
    try:
        return await check(store, limit=limit)
    finally:
        await store.close()
