"""The worker's claim and finish are database functions (aijobs.claim_jobs and
aijobs.finish_attempts): like every function, they refuse what no worker sends, naming the
argument, before touching a row."""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg
import pytest


def refusal(conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...]) -> dict[str, Any]:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    assert caught.value.sqlstate == "AJ005", caught.value
    detail = caught.value.diag.message_detail
    assert detail is not None
    parsed: dict[str, Any] = json.loads(detail)
    return parsed


@pytest.mark.parametrize(
    ("worker_id", "limit", "lease", "field"),
    [
        (None, 10, 30.0, "worker_id"),
        ("", 10, 30.0, "worker_id"),
        ("w" * 201, 10, 30.0, "worker_id"),
        ("w", None, 30.0, "limit"),
        ("w", 0, 30.0, "limit"),
        ("w", 10_001, 30.0, "limit"),
        ("w", 10, None, "lease_seconds"),
        ("w", 10, 0.0, "lease_seconds"),
        ("w", 10, math.nan, "lease_seconds"),
        ("w", 10, math.inf, "lease_seconds"),
        ("w", 10, 86_401.0, "lease_seconds"),
    ],
)
def test_the_claim_refuses_what_no_worker_sends(
    db_url: str, worker_id: str | None, limit: int | None, lease: float | None, field: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        detail = refusal(conn, "select * from aijobs.claim_jobs(%s, %s, %s)", (worker_id, limit, lease))
    assert detail["field"] == field


@pytest.mark.parametrize(
    ("worker_id", "rows", "field"),
    [
        (None, "[]", "worker_id"),
        ("w", None, "rows"),
        ("w", '{"id": 1}', "rows"),
        ("w", '"text"', "rows"),
    ],
)
def test_the_finish_refuses_what_no_worker_sends(
    db_url: str, worker_id: str | None, rows: str | None, field: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        detail = refusal(conn, "select * from aijobs.finish_attempts(%s, %s::jsonb)", (worker_id, rows))
    assert detail["field"] == field


@pytest.mark.parametrize(
    ("statement", "params", "field"),
    [
        ("select * from aijobs.take_turns(%s, 1)", (None,), "tenant"),
        ("select * from aijobs.take_turns(gen_random_uuid(), %s)", (None,), "n"),
        ("select * from aijobs.take_turns(gen_random_uuid(), %s)", (0,), "n"),
        ("select * from aijobs.take_turns(gen_random_uuid(), %s)", (10_001,), "n"),
        ("select aijobs.turn_due_jobs(%s)", (None,), "limit"),
        ("select aijobs.turn_due_jobs(%s)", (0,), "limit"),
        ("select aijobs.turn_due_jobs(%s)", (10_001,), "limit"),
    ],
)
def test_the_claims_turn_keeping_refuses_what_the_claim_never_passes(
    db_url: str, statement: str, params: tuple[Any, ...], field: str
) -> None:
    """take_turns and turn_due_jobs (service_role may call them too) check their arguments."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        detail = refusal(conn, statement, params)
    assert detail["field"] == field
