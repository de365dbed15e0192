"""Dashboard and stats queries stay index scans on a large history (no seq scan over jobs).

The times themselves are shown by bench/monitoring_queries.py (1,000,000 jobs); here the
planner faces 100,000 finished jobs and every plan is checked for a sequential scan of
`jobs` or `job_attempts`, which is what would make the time grow with history.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aijobs.db.queries import query
from tests.support.history import fill_history

pytestmark = pytest.mark.slow

WINDOWS = [1, 5, 15, 60]
PLANS: dict[str, dict[str, Any]] = {
    "mon_queue_depth": {},
    "mon_top_tenants": {"limit": 10},
    "mon_oldest_pending": {},
    "mon_job_windows": {"windows": WINDOWS, "max_minutes": 60},
    "mon_attempt_windows": {"windows": WINDOWS, "max_minutes": 60},
    "mon_provider_windows": {"windows": WINDOWS, "max_minutes": 60},
    "mon_job_series": {"minutes": 60, "bucket_seconds": 60},
    "mon_provider_series": {"minutes": 60, "bucket_seconds": 60},
    "mon_workers": {"dead_after_seconds": 30, "stopped_minutes": 60},
    "mon_recent_failures": {"limit": 20},
    "mon_queue_sample": {},
    "mon_prune_jobs": {"age_seconds": 7 * 86400, "batch": 1000},
}
BIG_TABLES = {"jobs", "job_attempts"}


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every (node type, relation) in a JSON plan tree."""
    found = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


@pytest.fixture(scope="module")
def big_db(admin_url: str, template_name: str) -> Any:
    from tests.support.database import create_test_database, drop_database

    url = create_test_database(admin_url, template_name)
    fill_history(url, jobs=100_000, days=7, pending=2000)
    yield url
    drop_database(admin_url, url)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_query_uses_indexes_not_seq_scans(big_db: str, name: str) -> None:
    with psycopg.connect(big_db, autocommit=True) as conn:
        row = conn.execute(sql.SQL("explain (format json) ") + query(name), PLANS[name]).fetchone()
    assert row is not None
    plan = row[0][0]["Plan"] if isinstance(row[0], list) else json.loads(row[0])[0]["Plan"]
    nodes = scans(plan)
    seq = [rel for node, rel in nodes if node == "Seq Scan" and rel in BIG_TABLES]
    assert not seq, f"{name} scans {seq} sequentially: {nodes}"
    assert any(node.startswith(("Index", "Bitmap")) and rel in BIG_TABLES for node, rel in nodes), nodes
