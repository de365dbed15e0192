"""A single creation and a batch hold every element to the same rules.

aijobs.create_jobs takes a batch of one through scalar statements and a larger batch through
set-shaped ones; both read aijobs.job_problem. Whatever element a caller sends, alone it is
refused with the same SQLSTATE, field and reason as at index 1 of a batch behind a valid job
(field prefixed `jobs[1].` there), or accepted by both.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

USER = uuid.UUID("00000000-0000-4000-8000-0000000051a9")
CALL = (
    "select id, created from aijobs.create_jobs(%s, %s::text[], %s::jsonb[], %s::smallint[],"
    " %s::timestamptz[], %s::integer[], %s::text[], null, false)"
)
VALID = ("sentiment_analysis", Jsonb({"text": "ok"}), 0, None, 4, None)

payloads = st.one_of(
    st.none(),
    st.just(Jsonb([1])),
    st.just(Jsonb("text")),
    st.just(Jsonb({"text": "x" * 70000})),
    st.just(Jsonb({"n": json.loads("1" + "0" * 40)})),
    st.recursive(st.just({"text": "ok"}), lambda inner: st.dictionaries(st.just("a"), inner, max_size=1))
    .filter(lambda v: isinstance(v, dict))
    .map(Jsonb),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(Jsonb),
)
elements = st.tuples(
    st.sampled_from(["sentiment_analysis", "no_such_type", "disabled_type"]),
    payloads,
    st.one_of(st.none(), st.integers(-150, 150)),
    st.one_of(
        st.none(),
        st.sampled_from(
            [
                datetime(1969, 12, 31, tzinfo=UTC),
                datetime(2026, 1, 1, tzinfo=UTC),
                datetime(9999, 6, 1, tzinfo=UTC),
            ]
        ),
    ),
    st.one_of(st.none(), st.integers(-1, 120)),
    st.one_of(st.none(), st.sampled_from(["", "k-1", "ключ", "x" * 256])),
)


def _outcome(conn: psycopg.Connection[Any], elems: list[tuple[Any, ...]]) -> tuple[str, ...]:
    """What create_jobs answers for these elements, rolled back: the SQLSTATE and the
    detail's field and reason, or "created"."""
    columns = list(zip(*elems, strict=True))
    try:
        with conn.transaction(force_rollback=True):
            rows = conn.execute(CALL, (USER, *[list(c) for c in columns])).fetchall()
    except psycopg.Error as exc:
        # PostgreSQL's own refusals (a NUL in a JSON string, say) carry no JSON detail.
        try:
            detail = json.loads(exc.diag.message_detail or "{}")
        except ValueError:
            detail = {"reason": exc.diag.message_primary}
        return (exc.sqlstate or "", str(detail.get("field", "")), str(detail.get("reason", "")))
    assert len(rows) == len(elems) and all(created for _, created in rows)
    return ("created",)


def test_one_element_alone_and_in_a_batch_meet_the_same_rules(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 1000000)", (USER,))
        conn.execute(
            "insert into aijobs.job_types (name, cost, timeout_seconds, enabled)"
            " values ('disabled_type', 1, 10, false)"
        )

        @settings(
            max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
        )
        @given(elements)
        def check(element: tuple[Any, ...]) -> None:
            alone = _outcome(conn, [element])
            batched = _outcome(conn, [VALID, element])
            if alone == ("created",):
                assert batched == ("created",)
                return
            state, field, reason = batched
            assert alone[0] == state
            assert alone[2] == reason
            if alone[1]:
                assert field == alone[1].replace("jobs[0].", "jobs[1].", 1)

        check()


def test_a_key_repeated_within_a_batch_is_named_by_its_element(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 100)", (USER,))
        keys = ["k-1", None, "k-2", "k-1", "k-2"]
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(
                CALL, (USER, ["sentiment_analysis"] * 5, [Jsonb({"text": "ok"})] * 5, None, None, None, keys)
            )
        detail = json.loads(refused.value.diag.message_detail or "{}")
        assert detail == {
            "field": "jobs[3].idempotency_key",
            "reason": "repeats the key of jobs[0]",
            "index": 3,
        }
        assert conn.execute("select count(*) from aijobs.jobs").fetchone() == (0,)
