"""The claim/finish/heartbeat/rescue statements stay index lookups as history grows.

With 100,000 finished jobs (and their attempts) and 2,000 tenants with pending jobs in the
tables, no hot-path plan may scan `jobs` or `job_attempts` sequentially, and the claim must walk
`jobs_fair_claim_idx` for the turns and an index on the tenant for each tenant's own jobs. A plan that
regresses to a scan (a join the planner turns into a hash of the whole table) fails here long
before it shows as a slow worker in production; `make bench` (W6) measures the speed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from aijobs.db.queries import query
from aijobs.db.rows import Finish
from tests.integration.test_monitoring_queries import BIG_TABLES, scans
from tests.support.database import create_test_database, drop_database
from tests.support.history import fill_history

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def history_db(admin_url: str, template_name: str) -> Iterator[str]:
    url = create_test_database(admin_url, template_name)
    fill_history(url, jobs=100_000, days=7, pending=2000)
    user = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 500)", (user,))
        conn.execute(
            "select aijobs.create_jobs(%s, array['sentiment_analysis'], array['{\"text\": \"x\"}'::jsonb])"
            " from generate_series(1, 300)",
            (user,),
        )
        # Many tenants waiting at once: the claim must not visit each of them.
        conn.execute(
            "select aijobs.grant_credits(u, 5), aijobs.create_jobs(u, array['sentiment_analysis'],"
            ' array[\'{"text": "x"}\'::jsonb])'
            " from (select gen_random_uuid() as u from generate_series(1, 2000)) t"
        )
        conn.execute("analyze")
    yield url
    drop_database(admin_url, url)


def plan_of(url: str, name: str, params: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The (node, relation) pairs of the plan `name` runs: its own, or for a named query that
    calls a function (the claim, the finish) the plan of the statement inside it."""
    with psycopg.connect(url) as conn:  # a transaction, rolled back: EXPLAIN ANALYZE-free
        row = conn.execute(sql.SQL("explain (format json) ") + query(name), params).fetchone()
        conn.rollback()
    assert row is not None
    doc = row[0] if isinstance(row[0], list) else json.loads(row[0])
    nodes = scans(doc[0]["Plan"])
    if nodes == [("Function Scan", None)]:
        plans = inner_plans(url, name, params, "json")
        return [node for plan in plans for node in scans(json.loads(plan)["Plan"])]
    return nodes


def inner_plans(url: str, name: str, params: dict[str, Any], fmt: str = "text") -> list[str]:
    """The plans of the statements the named query runs inside the functions it calls, as
    PostgreSQL made them there (the generic plan a worker's connection keeps): auto_explain
    reports each to this client. The query runs in a transaction that is rolled back."""
    found: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if "plan:" in text:
            found.append(text.split("plan:", 1)[1].strip())

    with psycopg.connect(url) as conn:
        conn.add_notice_handler(keep)
        conn.execute("load 'auto_explain'")
        for setting, value in [
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_format", fmt),
            ("client_min_messages", "log"),
        ]:
            conn.execute("select set_config(%s, %s, true)", (setting, value))
        conn.execute(query(name), params).fetchall()
        conn.rollback()
    # Not the settings' own statements; the outer statement (a Function Scan) ends last, so
    # its plan is reported last.
    found = [plan for plan in found if "set_config(" not in plan]
    assert len(found) > 1, f"{name} ran no statement inside a function: {found}"
    return found[:-1]


def claimed(url: str, n: int) -> list[tuple[uuid.UUID, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            query("job_claim"), {"worker_id": "plan", "limit": n, "lease_seconds": 60}
        ).fetchall()
    return [(r[0], r[5]) for r in rows]  # id, lease_token


def one_tenants_backlog(conn: psycopg.Connection[Any]) -> None:
    """20,000 pending jobs of one new tenant (W2's drain), then fresh statistics."""
    user = uuid.uuid4()
    conn.execute("select aijobs.grant_credits(%s, 20000)", (user,))
    for _ in range(2):  # a creation takes at most 10,000 jobs
        conn.execute(
            "select count(*) from aijobs.create_jobs("
            " %s, array_fill('sentiment_analysis'::text, array[10000]),"
            ' array_fill(\'{"text": "x"}\'::jsonb, array[10000]))',
            (user,),
        )
    conn.execute("analyze aijobs.jobs")


def no_seq_scans(nodes: list[tuple[str, str | None]], name: str) -> None:
    seq = [rel for node, rel in nodes if node == "Seq Scan" and rel in BIG_TABLES]
    assert not seq, f"{name} scans {seq} sequentially: {nodes}"


@pytest.fixture(params=["no limit", "limited"])
def limits(request: pytest.FixtureRequest, history_db: str) -> Iterator[str]:
    """The claim as it runs without any limit on tenants' running jobs (the default), and with
    a deployment-wide limit and one tenant's own (claim_room, and the tenants passed over)."""
    limited = request.param == "limited"
    with psycopg.connect(history_db, autocommit=True) as conn:
        if limited:
            conn.execute("update aijobs.settings set max_running_per_tenant = 5")
            conn.execute(
                "insert into aijobs.tenants (tenant, max_running)"
                " select tenant, 2 from aijobs.jobs where status = 'pending' limit 1"
                " on conflict (tenant) do update set max_running = 2"
            )
        try:
            yield request.param
        finally:
            conn.execute("update aijobs.settings set max_running_per_tenant = null")
            conn.execute("update aijobs.tenants set max_running = null where max_running is not null")


def test_claim_walks_the_claim_index(history_db: str, limits: str) -> None:
    nodes = plan_of(history_db, "job_claim", {"worker_id": "w", "limit": 100, "lease_seconds": 30})
    no_seq_scans(nodes, "job_claim")
    assert ("Index Scan", "jobs") in nodes or ("Index Only Scan", "jobs") in nodes
    claim = {"worker_id": "w", "limit": 100, "lease_seconds": 30}
    plan = "\n".join(inner_plans(history_db, "job_claim", claim))
    assert "jobs_fair_claim_idx" in plan, plan
    # Each tenant's own jobs by an index on the tenant (jobs_tenant_claim_idx): never a walk
    # of the whole queue.
    tenant_step = [
        (node, line) for node, line in node_lines(plan) if re.search(r"\(tenant = t(_\d+)?\.tenant\)", line)
    ]
    on_jobs = [line for node, line in tenant_step if " on jobs " in node]
    assert on_jobs and all("Index Cond" in line for line in on_jobs), plan
    # The tenants at their limit are found from the running jobs alone, never the backlog.
    full_tenants = plan.split("CTE full_tenants", 1)[1].split("CTE turns", 1)[0]
    assert reads_only_running_jobs(full_tenants), plan
    # With nothing paused and no tenant at its limit, the turns come from the fair-share
    # index in its order, unfiltered (the first of the two arms).
    plain = plan.split("Subquery Scan on plain", 1)[1].split("Subquery Scan on passing_over", 1)[0]
    assert "Index Scan using jobs_fair_claim_idx" in plain and "Sort" not in plain, plan
    # Jobs not due yet (2,000 of them here) have no turn: the walk of the turns stops before
    # them in the index, and the claim's first step, looking for jobs that have come due
    # without a turn, reads only the due ones among them (both bounds are index conditions).
    fair_scan = plain[plain.index("jobs_fair_claim_idx") :].split("->")[0]
    assert (
        "Index Cond: ((fair_tag IS NOT NULL) AND ((run_at)::timestamp with time zone <= now()))" in fair_scan
    ), plan
    due = plan.split("j.fair_tag is null and j.run_at <= now()\n        order by", 1)[1]
    due_scan = due[due.index("jobs_fair_claim_idx") :].split("->")[0]
    assert re.search(
        r"Index Cond: \(\(fair_tag IS NULL\) AND \(\(?run_at\)?(::timestamp with time zone)? <= now\(\)\)",
        due_scan,
    ), plan


def test_claim_walks_the_fair_index_when_one_tenant_holds_the_queue(db_url: str) -> None:
    """The drain of one tenant's backlog (W2): with one user in the statistics the planner
    once judged that the tenant-limit filter passed nothing and sorted every pending job."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        one_tenants_backlog(conn)
    plan = "\n".join(inner_plans(db_url, "job_claim", {"worker_id": "w", "limit": 1000, "lease_seconds": 30}))
    turns = plan.split("CTE turns", 1)[1].split("CTE turn_counts", 1)[0]
    assert "jobs_fair_claim_idx" in turns and "Seq Scan on jobs" not in turns, plan


def test_claim_walks_the_indexes_beside_a_long_history(db_url: str) -> None:
    """W6's shape: one tenant's backlog beside 400,000 finished jobs. The claim's plan is made
    for an unknown limit (a tenth of the backlog, PostgreSQL assumes); it read every pending job
    and sorted them here, where the indexes give both orders, until sorts were turned off in it."""
    fill_history(db_url, jobs=400_000, days=7, pending=0)
    with psycopg.connect(db_url, autocommit=True) as conn:
        one_tenants_backlog(conn)
        conn.execute("analyze")
    plan = "\n".join(inner_plans(db_url, "job_claim", {"worker_id": "w", "limit": 1000, "lease_seconds": 30}))
    turns = plan.split("CTE turns", 1)[1].split("CTE turn_counts", 1)[0]
    picked = plan.split("CTE picked", 1)[1].split("CTE kept", 1)[0]
    assert "Index Scan using jobs_fair_claim_idx" in turns and "Sort" not in turns, plan
    assert "Index Scan using jobs_tenant_claim_idx" in picked and "Sort" not in picked, plan


def test_finish_heartbeat_and_rescue_are_key_lookups(history_db: str, limits: str) -> None:
    held = claimed(history_db, 100)
    rows = [
        Finish(id=job_id, lease_token=token, status="completed", outcome="completed", result={}).as_json()
        for job_id, token in held
    ]
    finish = {"rows": Jsonb(rows), "worker_id": "plan"}
    no_seq_scans(plan_of(history_db, "job_finish_many", finish), "job_finish_many")
    # The finish reads the jobs it ends by their key: its plan is made once per connection, and
    # one through an index of all running jobs (chosen when the statistics showed few) would
    # read every running job at every finish once thousands run.
    ending = next(p for p in inner_plans(history_db, "job_finish_many", finish) if "finished as" in p)
    jobs_scans = re.findall(r"(?:Index|Index Only|Bitmap Index) Scan using (\w+) on jobs j\b", ending)
    assert jobs_scans and set(jobs_scans) == {"jobs_pkey"}, ending
    beat = {"ids": [j for j, _ in held], "tokens": [t for _, t in held], "lease_seconds": 30}
    no_seq_scans(plan_of(history_db, "job_heartbeat", beat), "job_heartbeat")
    no_seq_scans(plan_of(history_db, "job_rescue_expired", {"limit": 100}), "job_rescue_expired")


def test_in_flight_count_reads_only_the_users_live_jobs(history_db: str) -> None:
    """The API's cap counts one user's live jobs per creation: never the whole live queue."""
    with psycopg.connect(history_db, autocommit=True) as conn:
        row = conn.execute("select user_id from aijobs.jobs where status = 'pending' limit 1").fetchone()
        assert row is not None
        text = conn.execute(
            sql.SQL("explain ") + query("api_in_flight_count"), {"user_id": row[0]}
        ).fetchall()
    plan = "\n".join(line[0] for line in text)
    assert "jobs_user_active_idx" in plan, plan


def test_the_claim_and_the_finish_are_planned_once_and_never_compiled(db_url: str) -> None:
    """What the next test shows where the server can JIT, read from the catalog everywhere:
    both functions keep one generic plan per connection and run without JIT."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select p.proname, p.proconfig from pg_proc p where p.pronamespace = 'aijobs'::regnamespace"
            " and p.proname in ('claim_jobs', 'finish_attempts')"
        ).fetchall()
    assert sorted(name for name, _ in rows) == ["claim_jobs", "finish_attempts"]
    for name, config in rows:
        assert {"plan_cache_mode=force_generic_plan", "jit=off"} <= set(config or []), (name, config)


@pytest.mark.parametrize("limited", [False, True], ids=["no limit", "limited"])
def test_the_claim_is_never_jit_compiled(db_url: str, limited: bool) -> None:
    """One tenant's deep backlog: the claim's plan is generic (its limit unknown), so its cost
    grows with the backlog; PostgreSQL must never compile it (JIT) at an execution, which took
    longer than the claim, even where the server's threshold is set to compile everything."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        available = conn.execute("select pg_jit_available()").fetchone()
        if available != (True,):
            pytest.skip("this server cannot JIT (the embedded one): the settings test covers it")
        if limited:
            conn.execute("update aijobs.settings set max_running_per_tenant = 500")
        one_tenants_backlog(conn)
    with psycopg.connect(db_url, options="-c jit=on -c jit_above_cost=0") as conn:
        for name, params in [
            ("job_claim", {"worker_id": "w", "limit": 1000, "lease_seconds": 30}),
            ("job_finish_many", {"worker_id": "w", "rows": Jsonb([])}),
        ]:
            plans = [json.loads(plan) for plan in inner_plans(conn.info.dsn, name, params, "json")]
            assert plans, name
            assert all("JIT" not in plan for plan in plans), plans
        # The same settings do compile a plain query here, so the check above can fail.
        rows = conn.execute("explain (analyze) select count(*) from aijobs.jobs").fetchall()
        assert any("JIT" in r[0] for r in rows), rows


def test_the_dashboards_find_by_id_part_reads_a_bounded_key_range(history_db: str) -> None:
    """By the end of an id alone: the newest ids, backwards on the primary key, never the table."""
    from uuid import UUID

    for low, high, suffix in [
        (UUID(int=0), UUID(int=2**128 - 1), "a1b2c3d4"),
        (
            UUID("01930000-0000-0000-0000-000000000000"),
            UUID("0193ffff-ffff-ffff-ffff-ffffffffffff"),
            "a1b2c3d4",
        ),
    ]:
        params = {"low": low, "high": high, "suffix": suffix, "scan": 100_000, "limit": 21}
        nodes = plan_of(history_db, "job_find_by_id_part", params)
        no_seq_scans(nodes, "job_find_by_id_part")
        assert ("Index Only Scan", "jobs") in nodes or ("Index Scan", "jobs") in nodes, nodes


def test_a_limited_claim_counts_only_the_running_jobs(history_db: str, limits: str) -> None:
    """claim_room counts a limited tenant's running jobs afresh inside the claim: from
    jobs_tenant_running_idx, whatever that tenant's backlog."""
    with psycopg.connect(history_db) as conn:
        row = conn.execute("select tenant from aijobs.jobs where status = 'pending' limit 1").fetchone()
        assert row is not None
        text = conn.execute(
            "explain select j.tenant, count(*) from aijobs.jobs j"
            " where j.status = 'processing' and j.tenant = any(%s) group by j.tenant",
            ([row[0]],),
        ).fetchall()
        held = claimed(history_db, 100)
    plan = "\n".join(line[0] for line in text)
    assert reads_only_running_jobs(plan), plan
    assert held, "the claim took no job"


def node_lines(plan: str) -> list[tuple[str, str]]:
    """Each line of a text plan with the plan node it belongs to (the last `->` line above)."""
    node = ""
    found = []
    for line in plan.splitlines():
        if "->" in line or not line.startswith(" "):
            node = line
        found.append((node, line))
    return found


def reads_only_running_jobs(plan: str) -> bool:
    """A scan of `jobs` in this plan reads one of the indexes of processing jobs only (which
    one depends on how many run now), never an index holding the backlog or the table."""
    scans = re.findall(
        r"(Seq Scan|Index Scan|Index Only Scan|Bitmap Index Scan)(?: using (\w+))? on jobs", plan
    )
    return bool(scans) and all(
        index in ("jobs_tenant_running_idx", "jobs_lease_expiry_idx") for _, index in scans
    )
