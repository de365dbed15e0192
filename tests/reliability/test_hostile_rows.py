"""No stored row stops anything: rows written straight into the tables as the owner (the
role a careless script or a Supabase SQL editor session uses) with the most hostile values
the database accepts. The worker fails what it cannot run, alone and refunded once, and goes
on; the rescuer takes back what it must; every reader answers. What lies beyond the bounds
is refused where it would be stored, even for the owner."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from tests.support.api_server import SERVICE_KEY
from tests.support.invariants import assert_invariants
from tests.support.workers import running_worker, wait_until

ODD = "\u202e\u200b\ufeff\u2028 zero-width, bidi, line separator, 🚀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, e\u0301\u0301\u0301"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


INSERT = """insert into aijobs.jobs (user_id, tenant, type, payload, cost, run_at, created_at, priority,
                                   max_attempts, status, result, error, finished_at, lease_token,
                                   lease_owner, lease_expires_at, attempts)
            values (%(user)s, %(user)s, %(type)s, %(payload)s, %(cost)s, %(run_at)s,
                    coalesce(%(created_at)s, now()), %(priority)s, %(max_attempts)s, %(status)s,
                    %(result)s, %(error)s, %(finished_at)s, %(lease_token)s, %(lease_owner)s,
                    %(lease_expires_at)s, %(attempts)s)
            returning id"""


def job(user: uuid.UUID, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "user": user,
        "type": "sentiment_analysis",
        "payload": json.dumps({"text": "fine"}),
        "cost": 1,
        "run_at": "2000-01-01T00:00:00Z",
        "created_at": None,
        "priority": 0,
        "max_attempts": 2,
        "status": "pending",
        "result": None,
        "error": None,
        "finished_at": None,
        "lease_token": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": 0,
    }
    row.update(values)
    return row


def insert_charged(conn: psycopg.Connection[Any], row: dict[str, Any]) -> uuid.UUID:
    """A job row as the owner writes it, with its debit, so the money invariants still hold."""
    with conn.transaction():
        (job_id,) = conn.execute(INSERT, row).fetchone() or (None,)
        conn.execute(
            "insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)"
            " values (%s, %s, 'debit', %s, 'x')",
            (row["user"], job_id, -row["cost"]),
        )
        conn.execute(
            "update aijobs.accounts set balance = balance - %s where user_id = %s", (row["cost"], row["user"])
        )
    assert isinstance(job_id, uuid.UUID)
    return job_id


REFUSED_EVEN_FOR_THE_OWNER = {
    "run_at infinity": {"run_at": "infinity"},
    "run_at -infinity": {"run_at": "-infinity"},
    "created in year 10000": {"created_at": "10000-01-01T00:00:00Z"},
    "payload nested 40 deep": {"payload": json.dumps(nested(40))},
    "payload number of 41 digits": {"payload": '{"text": "x", "n": 1e40}'},
    "payload an array": {"payload": "[1]"},
    "result an array": {"status": "completed", "finished_at": "2020-01-01T00:00:00Z", "result": "[1]"},
    "priority 1000": {"priority": 1000},
}


@pytest.mark.parametrize("values", REFUSED_EVEN_FOR_THE_OWNER.values(), ids=REFUSED_EVEN_FOR_THE_OWNER.keys())
def test_values_beyond_the_bounds_are_refused_even_for_the_owner(
    db_url: str, funded_user: uuid.UUID, values: dict[str, Any]
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(INSERT, job(funded_user, **values))


async def test_a_worker_the_rescuer_and_every_reader_survive_the_most_hostile_rows(
    db_url: str, settings: Settings, store: Store, funded_user: uuid.UUID, start_api: Any
) -> None:
    user = funded_user
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into aijobs.job_types (name, cost, timeout_seconds) values ('ghost_type', 1, 5)")
        runnable = {
            "odd unicode": insert_charged(conn, job(user, payload=json.dumps({"text": ODD}))),
            "oldest run_at": insert_charged(conn, job(user, run_at="1970-01-01T00:00:00Z")),
            "created in 9998": insert_charged(conn, job(user, created_at="9998-12-31T00:00:00Z")),
        }
        unrunnable = {
            # Loaded whole (32-character numbers), then refused by the type's model.
            "numbers at the bound": insert_charged(
                conn,
                job(user, payload=json.dumps({"text": "n", "big": 10**31, "small": -(10**30), "f": 1e-30})),
            ),
            "payload its model refuses": insert_charged(conn, job(user, payload=json.dumps({"text": 12345}))),
            "payload nested 32 deep": insert_charged(conn, job(user, payload=json.dumps(nested(32)))),
            "empty payload": insert_charged(conn, job(user, payload="{}")),
            "a type no worker has": insert_charged(conn, job(user, type="ghost_type")),
        }
        finished = insert_charged(
            conn,
            job(
                user,
                status="completed",
                finished_at="9998-06-01T00:00:00Z",
                result=json.dumps({"reply": ODD, "deep": nested(31)}),
                error="e" * 1_000_000,
                attempts=1,
            ),
        )
        expired = insert_charged(
            conn,
            job(
                user,
                status="processing",
                attempts=1,
                lease_token=10**15,
                lease_owner=ODD * 50,
                lease_expires_at="1970-01-02T00:00:00Z",
            ),
        )
        conn.execute(
            """insert into aijobs.job_attempts
                   (lease_token, job_id, attempt, worker_id, finished_at, outcome, error)
               values (%s, %s, 1, %s, '9998-06-01T00:00:00Z', 'completed', %s)""",
            (10**15 + 1, finished, ODD, ODD * 1000),
        )
        conn.execute(
            """insert into aijobs.workers (id, host, pid, version, concurrency, in_flight, last_heartbeat_at)
               values (%s, %s, 2147483647, %s, 2147483647, -5, '1970-01-01T00:00:00Z')""",
            (ODD, ODD * 100, ODD),
        )

    async with running_worker(settings, store):
        with psycopg.connect(db_url, autocommit=True) as conn:

            async def all_ended() -> bool:
                ids = [*runnable.values(), *unrunnable.values(), expired]
                rows = conn.execute(
                    "select count(*) from aijobs.jobs where id = any(%s)"
                    " and status in ('pending', 'processing') and type <> 'ghost_type'",
                    (ids,),
                ).fetchone()
                return rows is not None and rows[0] == 0

            await wait_until(all_ended, timeout=30, what="every runnable hostile row to end")
            statuses = dict(
                conn.execute(
                    "select id, status::text from aijobs.jobs where id = any(%s)",
                    ([*runnable.values(), *unrunnable.values(), expired],),
                ).fetchall()
            )
            # A job made after them still runs: the worker and the queue go on.
            fresh = insert_charged(conn, job(user, payload=json.dumps({"text": "after the storm"})))

            async def fresh_done() -> bool:
                row = conn.execute("select status::text from aijobs.jobs where id = %s", (fresh,)).fetchone()
                return row is not None and row[0] == "completed"

            await wait_until(fresh_done, timeout=20, what="a normal job after the hostile ones")

    for name, job_id in runnable.items():
        assert statuses[job_id] == "completed", name
    for name, job_id in unrunnable.items():
        if name == "a type no worker has":
            assert statuses[job_id] in ("pending", "failed"), name
        else:
            assert statuses[job_id] == "failed", name
    assert statuses[expired] in ("pending", "completed", "failed")
    await assert_invariants(db_url)

    api = start_api()
    service = {"Authorization": f"Bearer {SERVICE_KEY}"}
    every = [*runnable.values(), *unrunnable.values(), finished, expired, fresh]
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        pages, cursor = 0, None
        while True:
            listed = await client.get(
                "/api/jobs",
                params={"limit": 5, **({"cursor": cursor} if cursor else {})},
                headers=api.auth(user),
            )
            assert listed.status_code == 200, listed.text
            pages += 1
            cursor = listed.json().get("next_cursor")
            if not cursor:
                break
        assert pages >= 2
        for job_id in every:
            one = await client.get(f"/api/jobs/{job_id}", headers=api.auth(user))
            assert one.status_code == 200, one.text
            inspected = await client.get(f"/dashboard/jobs/{job_id}", headers=service)
            assert inspected.status_code == 200, inspected.text
        assert (await client.get(f"/api/jobs/{finished}", headers=api.auth(user))).json()["result"][
            "reply"
        ] == ODD
        admin = await client.get("/api/admin/jobs", params={"limit": 100}, headers=service)
        assert admin.status_code == 200, admin.text
        for page in ("/dashboard/live", "/metrics", "/readyz"):
            answered = await client.get(page, headers=service)
            assert answered.status_code == 200, (page, answered.text[:500])
        async with client.stream("GET", f"/api/jobs/{finished}/events", headers=api.auth(user)) as events:
            assert events.status_code == 200
            text = ""
            async for chunk in events.aiter_text():
                text += chunk
                if "completed" in text:
                    break
        assert "completed" in text
