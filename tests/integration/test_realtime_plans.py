"""The webhook deliverer's and the event streams' statements stay index lookups as their
tables grow: with 50,000 finished deliveries and 50,000 streamed pieces in place, no plan may
scan those tables sequentially, and the claim must walk the partial index of due rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aijobs.db.queries import query
from tests.support.database import create_test_database, drop_database

pytestmark = pytest.mark.slow
ROWS = 50_000


@pytest.fixture(scope="module")
def filled_db(admin_url: str, template_name: str) -> Iterator[str]:
    url = create_test_database(admin_url, template_name)
    with psycopg.connect(url, autocommit=True) as conn:
        endpoint = conn.execute(
            "insert into aijobs.webhook_endpoints (url, secret, events)"
            " values ('https://hooks.example.test/x', %s, array['job.completed']) returning id",
            ("whsec_" + "C" * 43 + "=",),
        ).fetchone()
        assert endpoint is not None
        conn.execute(
            "insert into aijobs.webhook_deliveries (endpoint_id, job_id, user_id, event, payload, status,"
            " updated_at) select %s, aijobs.uuid_v7(), %s, 'job.completed', '{}',"
            " case when i <= 10 then 'pending' else 'delivered' end, now() - make_interval(secs => i)"
            " from generate_series(1, %s) i",
            (endpoint[0], uuid.uuid4(), ROWS),
        )
        conn.execute(
            "insert into aijobs.job_stream_chunks (job_id, lease_token, seq, text)"
            " select aijobs.uuid_v7(), i, 1, 'piece' from generate_series(1, %s) i",
            (ROWS,),
        )
        conn.execute("analyze")
    yield url
    drop_database(admin_url, url)


def plan_nodes(url: str, name: str, params: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node of the statement's plan, not run."""
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("explain (format json) ") + query(name), params).fetchone()
        conn.rollback()
    assert row is not None
    found: list[tuple[str, str | None, str | None]] = []

    def walk(node: dict[str, Any]) -> None:
        found.append((node["Node Type"], node.get("Relation Name"), node.get("Index Name")))
        for child in node.get("Plans", []):
            walk(child)

    walk(row[0][0]["Plan"])
    return found


CASES = {
    "webhook_delivery_claim": {"n": 8, "lease_seconds": 25.0},
    "webhook_delivery_record": {
        "id": uuid.uuid4(),
        "attempt": 1,
        "ok": True,
        "status_code": 200,
        "error": None,
        "duration_ms": 1.0,
        "retry_in": 0.0,
        "window_seconds": 86400.0,
        "worker_id": "w",
    },
    "webhook_delivery_recent": {"limit": 15},
    "webhook_delivery_prune": {"age_seconds": 7 * 86400.0, "batch": 1000},
    "job_stream_append": {"job_id": uuid.uuid4(), "lease_token": 1, "seq": 2, "text": "x"},
    "job_stream_read": {"job_id": uuid.uuid4(), "lease_token": 0, "seq": 0},
    "job_stream_prune": {"grace_seconds": 60.0, "batch": 1000},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_realtime_statement_scans_its_table(filled_db: str, name: str) -> None:
    nodes = plan_nodes(filled_db, name, CASES[name])
    scanned = [
        r for kind, r, _ in nodes if kind == "Seq Scan" and r in ("webhook_deliveries", "job_stream_chunks")
    ]
    assert scanned == [], (name, nodes)


def test_the_delivery_claim_walks_the_index_of_due_rows(filled_db: str) -> None:
    nodes = plan_nodes(filled_db, "webhook_delivery_claim", CASES["webhook_delivery_claim"])
    assert any(index == "webhook_deliveries_due_idx" for _, _, index in nodes), nodes
