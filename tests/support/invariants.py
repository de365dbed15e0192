"""The invariant check as a test assertion: call it at the end of any test that ran jobs.

    from tests.support.invariants import assert_invariants
    await assert_invariants(db_url)          # async tests
    assert_invariants_sync(db_url)           # sync tests

It fails with every violation listed (see aijobs.queue.invariants for what is checked) and
returns the report, whose `summary` counts jobs by status, attempts and ledger rows.
"""

from __future__ import annotations

import asyncio

from aijobs.queue.invariants import Report, check_url


async def assert_invariants(db_url: str, *, limit: int = 50) -> Report:
    report = await check_url(db_url, limit=limit)
    assert report.ok, "invariants violated:\n" + "\n".join(report.lines())
    return report


def assert_invariants_sync(db_url: str, *, limit: int = 50) -> Report:
    return asyncio.run(assert_invariants(db_url, limit=limit))
