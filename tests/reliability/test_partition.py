"""Three worker hosts, each in a network namespace of its own, reach a PostgreSQL of their own
across veth links (tests/support/netns.py). One host is cut off mid-work: its jobs are
rescued by the other two once their leases end, its late writes are fenced when it comes
back, and it rejoins. Nothing lost, nothing charged twice.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aijobs.db.migrate import migrate
from tests.conftest import worker_env
from tests.reliability.chaos import (
    Row,
    bulk_create,
    chaos_summary,  # noqa: F401  (prints and writes the summary table)
    completed,
    finish_scenario,
    lease_holders,
)
from tests.support.database import job_type_rows
from tests.support.netns import NetnsPostgres, Network, unavailable
from tests.support.snapshots import snapshot
from tests.support.workers import WorkerProcess, fetch_all, wait_until

WHY_NOT = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

LEASE, HEARTBEAT = 4.0, 1.0
FENCED = re.compile(r"Result of job ([0-9a-f-]{36}) refused: its lease was taken over \(fenced\)")


@pytest.fixture
def hosts() -> Iterator[tuple[Network, NetnsPostgres]]:
    network = Network(3).create()
    server: NetnsPostgres | None = None
    try:
        server = NetnsPostgres(network).start()
        yield network, server
    finally:
        if server is not None:
            server.stop()
        network.destroy()


async def test_a_host_cut_off_mid_work_is_rescued_fenced_and_rejoins(
    hosts: tuple[Network, NetnsPostgres], tmp_path: Path
) -> None:
    network, server = hosts
    with psycopg.connect(server.local_url("postgres"), autocommit=True) as conn:
        conn.execute("create database aijobs")
    db = server.local_url("aijobs")  # the test's view: the Unix socket
    migrate(db, job_types=job_type_rows())
    user = uuid.uuid4()
    # Jobs of 2 s, half a lease: those running at the cut end during it, and their results
    # wait in the cut host until it is back, by then long taken over.
    await bulk_create(db, user, 36, "sleep:2")
    env = worker_env(
        server.host_url("aijobs"),
        LEASE_SECONDS=str(LEASE),
        HEARTBEAT_SECONDS=str(HEARTBEAT),
        WORKER_CONCURRENCY="4",
        LOG_LEVEL="INFO",
    )
    workers = [WorkerProcess(env, tmp_path / f"host{i}.log", prefix=network.on_host(i)) for i in range(3)]
    cut_off = workers[0]
    try:

        async def holds_jobs() -> bool:
            return len(await lease_holders(db, cut_off.pid)) >= 2

        await wait_until(holds_jobs, timeout=30, what="host 0 running jobs")
        network.cut(0)
        cut_at = time.monotonic()
        held = await lease_holders(db, cut_off.pid)
        # No renewal from host 0 reaches the database any more: these are its leases' ends.
        expiries = {
            r["id"]: r["lease_expires_at"]
            for r in await fetch_all(
                db, "select id, lease_expires_at from aijobs.jobs where id = any(%s)", held
            )
        }

        async def taken_back() -> bool:
            return not set(held) & set(await lease_holders(db, cut_off.pid))

        await wait_until(taken_back, timeout=LEASE + HEARTBEAT + 10, interval=0.05, what="its jobs rescued")
        rescued_after = time.monotonic() - cut_at

        async def done_by_others() -> bool:
            rows = await fetch_all(
                db, "select count(*) as n from aijobs.jobs where id = any(%s) and status = 'completed'", held
            )
            return rows[0]["n"] == len(held)

        await wait_until(done_by_others, timeout=30, what="its jobs completed by the other hosts")
        lost = await fetch_all(
            db,
            "select job_id, outcome, finished_at from aijobs.job_attempts"
            " where job_id = any(%s) and worker_id like %s",
            held,
            f"%-{cut_off.pid}-%",
        )
        assert sorted(r["job_id"] for r in lost) == sorted(held), "one attempt of host 0 per job it held"
        assert {r["outcome"] for r in lost} == {"lost"}, lost
        lateness = [(r["finished_at"] - expiries[r["job_id"]]).total_seconds() for r in lost]
        assert min(lateness) >= 0, "no job was taken back before its lease ended"

        network.restore(0)

        def fenced() -> set[uuid.UUID]:
            return {uuid.UUID(m) for m in FENCED.findall(cut_off.output())}

        async def late_writes_fenced() -> bool:
            return set(held) <= fenced()

        # The stalled connections resume at their next TCP retransmission (backed off).
        await wait_until(late_writes_fenced, timeout=90, interval=0.25, what="host 0's late results fenced")

        # It rejoins: with the others stopped, new work is done by host 0 alone.
        for other in workers[1:]:
            other.send(signal.SIGTERM)
            assert await other.wait() == 0, other.output()
        await bulk_create(db, user, 8, "Lovely staff.")

        async def all_done() -> bool:
            return await completed(db) == 44

        await wait_until(all_done, timeout=60, what="the new jobs completed by host 0")
        latest = await fetch_all(
            db,
            "select a.worker_id from aijobs.job_attempts a join aijobs.jobs j on j.id = a.job_id"
            " where j.payload->>'text' = 'Lovely staff.'",
        )
        assert len(latest) == 8 and all(f"-{cut_off.pid}-" in r["worker_id"] for r in latest), latest
    finally:
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [await w.wait(timeout=60) for w in workers]
    assert codes == [0, 0, 0], [w.output()[-2000:] for w in workers]

    # Money: 44 jobs, each debited once, none refunded; every one completed exactly once.
    state = await snapshot(db, user)
    assert (state.balance, state.ledger_sum, state.jobs) == (0, 0, 44)
    debits = await fetch_all(db, "select kind, count(*) as n from aijobs.credit_ledger group by kind")
    assert {r["kind"]: r["n"] for r in debits} == {"grant": 2, "debit": 44}
    await finish_scenario(
        db,
        Row(
            scenario="netns partition: one of 3 hosts cut off",
            faults=f"veth down {len(held)} jobs in flight, back after their rescue",
            jobs=44,
            lost=0,
            double_effects=0,
            recovery=f"rescued {rescued_after:.2f} s after the cut (lease {LEASE:g} s, heartbeat "
            f"{HEARTBEAT:g} s); taken {min(lateness):.2f}-{max(lateness):.2f} s after lease end (db clock)",
            notes=f"{len(fenced())} late results fenced; host rejoined",
        ),
    )
