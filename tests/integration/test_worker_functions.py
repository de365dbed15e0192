"""The worker's claim and finish are database functions (aijobs.claim_jobs and
aijobs.finish_attempts): like every function, they refuse what no worker sends, naming the
argument, before touching a row."""

from __future__ import annotations

import json
import math
import uuid
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


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((None, 1, 1, 1, 60.0), "provider"),
        (("", 1, 1, 1, 60.0), "provider"),
        (("openai", 0, None, 1, 60.0), "rpm"),
        (("openai", None, -1, 1, 60.0), "tpm"),
        (("openai", 1, 1, None, 60.0), "tokens"),
        (("openai", 1, 1, -5, 60.0), "tokens"),
        (("openai", 1, 1, 1, 0.0), "window_seconds"),
        (("openai", 1, 1, 1, math.nan), "window_seconds"),
        (("openai", 1, 1, 1, 1e30), "window_seconds"),
        (("openai", 1, 1, 1, None), "window_seconds"),
    ],
)
def test_the_provider_budget_refuses_what_the_settings_never_allow(
    db_url: str, args: tuple[Any, ...], field: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        detail = refusal(
            conn,
            "select * from aijobs.provider_budget_reserve(%s, %s, %s, %s, %s::real)",
            args,
        )
        assert detail["field"] == field
        assert conn.execute("select count(*) from aijobs.provider_calls").fetchone() == (0,)


USER = "00000000-0000-4000-8000-00000000c0de"


def claimed_job(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    conn.execute("select aijobs.grant_credits(%s, 10, 'test')", (USER,))
    conn.execute(
        "select * from aijobs.create_jobs(%s, array['sentiment_analysis'], array[%s::jsonb])",
        (USER, '{"text": "x"}'),
    )
    row = conn.execute("select id::text, lease_token from aijobs.claim_jobs('w', 1, 30)").fetchone()
    assert row is not None
    return row[0], row[1]


DEEP = {"a": 1}
for _ in range(40):
    DEEP = {"a": DEEP}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "processing"}, "rows[0].status"),
        ({"status": None}, "rows[0].status"),
        ({"status": "weird"}, "rows[0].status"),
        ({"outcome": "weird"}, "rows[0].outcome"),
        ({"status": "pending", "outcome": "retry", "retry_in": 1e30}, "rows[0].retry_in"),
        ({"status": "pending", "outcome": "retry", "retry_in": "NaN"}, "rows[0].retry_in"),
        ({"result": DEEP}, "rows[0].result"),
        ({"input_tokens": 10_000_000_000}, "rows[0].input_tokens"),
        ({"output_tokens": 1.5}, "rows[0].output_tokens"),
        ({"latency_ms": 1e300}, "rows[0].latency_ms"),
        ({"cost_usd": 1e7}, "rows[0].cost_usd"),
        ({"give_back": "maybe"}, "rows[0].give_back"),
        ({"lease_token": "x"}, "rows[0].lease_token"),
        ({"id": "not-a-uuid"}, "rows[0].id"),
        (None, "rows[0]"),
    ],
)
def test_the_finish_names_the_row_and_field_it_cannot_store(
    db_url: str, change: dict[str, Any] | None, field: str
) -> None:
    """A worker never sends these; a direct caller (service_role) is told which row and field,
    and nothing is written: the job is still running under its lease."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        job_id, token = claimed_job(conn)
        row: Any = {"id": job_id, "lease_token": token, "status": "completed", "outcome": "completed"}
        rows = json.dumps([1] if change is None else [{**row, "result": {"label": "ok"}, **change}])
        detail = refusal(conn, "select * from aijobs.finish_attempts('w', %s::jsonb)", (rows,))
        assert detail["field"] == field, detail
        assert detail["index"] == 0
        state = conn.execute("select status::text, lease_token from aijobs.jobs where id = %s", (job_id,))
        assert state.fetchone() == ("processing", token)
        attempts = conn.execute("select count(*) from aijobs.job_attempts where job_id = %s", (job_id,))
        assert attempts.fetchone() == (0,)


def test_the_finish_still_ends_good_rows(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        job_id, token = claimed_job(conn)
        row = {
            "id": job_id,
            "lease_token": token,
            "status": "completed",
            "outcome": "completed",
            "result": {"label": "ok"},
            "input_tokens": 3,
            "cost_usd": 0.5,
            "retry_in": None,
        }
        ended = conn.execute("select * from aijobs.finish_attempts('w', %s::jsonb)", (json.dumps([row]),))
        assert ended.fetchall() == [(uuid.UUID(job_id), token, "completed")]
