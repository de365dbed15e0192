"""Batch creation (enqueue_many / aijobs.create_jobs): all or nothing, charged once
per job, on a real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from aijobs.db.queries import query
from aijobs.db.refusals import refusals
from aijobs.db.store import Session, Store
from aijobs.errors import Forbidden, InsufficientCredits, InvalidArgument, InvalidPayload, UnknownJobType
from aijobs.queue.enqueue import JobSpec, enqueue_many, validate_payload
from tests.integration.test_credits import ledger_state
from tests.support.invariants import assert_invariants

COSTS = {"sentiment_analysis": 1, "review_processing": 3}
PAYLOADS = {"sentiment_analysis": {"text": "Quick and kind."}, "review_processing": {"review_text": "ok"}}


def spec(job_type: str, i: int = 0, **kw: object) -> JobSpec:
    payload = {"text": f"review {i}"} if job_type == "sentiment_analysis" else PAYLOADS[job_type]
    return JobSpec(job_type, payload, **kw)  # type: ignore[arg-type]


async def test_a_batch_creates_every_job_in_order_with_one_debit_each(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    jobs = [spec("sentiment_analysis", i) for i in range(5)] + [spec("review_processing", priority=7)]
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute("listen aijobs_jobs")
        async with store.session() as s:
            created = await enqueue_many(s, user_id=funded_user, jobs=jobs)
        woken = set()
        async for note in listener.notifies(timeout=1.0):
            woken.add(note.payload)
            if woken == set(COSTS):
                break
    assert woken == set(COSTS)
    assert [c.cost for c in created] == [1] * 5 + [3]
    assert {c.balance for c in created} == {1000 - 8}
    assert all(c.created and c.status == "pending" for c in created)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        rows = await (
            await conn.execute(
                "select j.id, j.type, j.priority, j.payload->>'text', l.amount"
                " from aijobs.jobs j join aijobs.credit_ledger l on l.job_id = j.id and l.kind = 'debit'"
                " where j.user_id = %s",
                (funded_user,),
            )
        ).fetchall()
    by_id = {row[0]: row[1:] for row in rows}
    assert [by_id[c.id] for c in created] == [
        *(("sentiment_analysis", 0, f"review {i}", -1) for i in range(5)),
        ("review_processing", 7, None, -3),
    ]
    assert await ledger_state(db_url, funded_user) == (992, 992, 6)
    await assert_invariants(db_url)


async def test_a_batch_the_balance_cannot_cover_creates_nothing(store: Store, db_url: str) -> None:
    user = uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(user, 6)
        with pytest.raises(InsufficientCredits) as refused:
            await enqueue_many(
                s, user_id=user, jobs=[spec("review_processing")] + [spec("sentiment_analysis")] * 4
            )
    assert (refused.value.balance, refused.value.cost) == (6, 7)
    assert await ledger_state(db_url, user) == (6, 6, 0)


async def test_a_bad_element_is_named_by_its_index_and_nothing_is_charged(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    jobs = [
        spec("sentiment_analysis"),
        JobSpec("ai_generation", {"tone": "rude"}),
        spec("sentiment_analysis"),
    ]
    async with store.session() as s:
        with pytest.raises(InvalidPayload) as bad:
            await enqueue_many(s, user_id=funded_user, jobs=jobs)
        with pytest.raises(UnknownJobType):
            await enqueue_many(
                s, user_id=funded_user, jobs=[spec("sentiment_analysis"), JobSpec("translate", {})]
            )
        assert await enqueue_many(s, user_id=funded_user, jobs=[]) == []
    assert {e["field"] for e in bad.value.errors} == {"jobs[1].review_text", "jobs[1].tone"}
    assert await ledger_state(db_url, funded_user) == (1000, 1000, 0)


async def test_the_sql_function_refuses_what_python_would_have_caught(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """Direct SQL callers (service_role, scripts) get the same typed refusals, with the index
    or the type named, and nothing written."""

    async def call(session: Session, **arrays: object) -> None:
        """The SQL function itself, with arrays the Python API could not send (of unequal
        lengths, a payload that is not an object)."""
        params = {
            "user_id": funded_user,
            "priorities": [0],
            "run_ats": None,
            "max_attempts": [4],
            "idempotency_keys": None,
            "retry_ofs": None,
            "quota": False,
            "tenant": None,
            **arrays,
        }
        with refusals():
            await session.conn.execute(query("job_create"), params)

    async with store.session() as s:
        with pytest.raises(UnknownJobType) as unknown:
            await call(
                s,
                types=["sentiment_analysis", "translate"],
                payloads=[Jsonb({}), Jsonb({})],
                priorities=[0, 0],
                max_attempts=[4, 4],
            )
        with pytest.raises(InvalidArgument, match=r"jobs\[0\]\.payload: must be a JSON object") as not_object:
            await call(s, types=["sentiment_analysis"], payloads=[Jsonb([1])])
        with pytest.raises(InvalidArgument, match="one element per job"):
            await call(s, types=["sentiment_analysis"] * 2, payloads=[Jsonb({"text": "x"})] * 2)
        with pytest.raises(InvalidArgument, match="takes 1 to 10000 jobs"):
            await call(s, types=[], payloads=[], priorities=[], max_attempts=[])
    assert unknown.value.details["type"] == "translate"
    assert not_object.value.details["index"] == 0
    assert not_object.value.details["field"] == "jobs[0].payload"
    assert await ledger_state(db_url, funded_user) == (1000, 1000, 0)


async def test_a_signed_in_user_creates_batches_only_for_themselves(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    other = uuid.uuid4()
    claims = {"sub": str(funded_user), "role": "authenticated"}
    async with store.as_user(claims) as s:
        created = await enqueue_many(s, user_id=None, jobs=[spec("sentiment_analysis")] * 2)
    async with store.session() as s:
        await s.accounts.grant_credits(other, 10)
    with pytest.raises(Forbidden):
        async with store.as_user(claims) as s:
            await enqueue_many(s, user_id=other, jobs=[spec("sentiment_analysis")])
    assert [c.balance for c in created] == [998, 998]
    assert await ledger_state(db_url, other) == (10, 10, 0)


async def test_concurrent_batches_never_overdraw(store: Store, db_url: str) -> None:
    """Eight batches of 3 credits race for a balance of 10: exactly three are created whole."""
    user = uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(user, 10)

    async def create() -> bool:
        async with store.session() as s:
            try:
                await enqueue_many(s, user_id=user, jobs=[spec("sentiment_analysis", i) for i in range(3)])
            except InsufficientCredits:
                return False
            return True

    results = await asyncio.gather(*(create() for _ in range(8)))
    assert sum(results) == 3
    assert await ledger_state(db_url, user) == (1, 1, 9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    balance=st.integers(min_value=1, max_value=12),
    types=st.lists(st.sampled_from(sorted(COSTS)), min_size=1, max_size=6),
)
async def test_a_batch_is_all_or_nothing(store: Store, db_url: str, balance: int, types: list[str]) -> None:
    user = uuid.uuid4()
    total = sum(COSTS[t] for t in types)
    async with store.session() as s:
        await s.accounts.grant_credits(user, balance)
        try:
            created = await enqueue_many(s, user_id=user, jobs=[spec(t, i) for i, t in enumerate(types)])
        except InsufficientCredits:
            created = []
    if total <= balance:
        assert [c.cost for c in created] == [COSTS[t] for t in types]
        assert await ledger_state(db_url, user) == (balance - total, balance - total, len(types))
    else:
        assert created == []
        assert await ledger_state(db_url, user) == (balance, balance, 0)


#: Text PostgreSQL can store (no NUL, no lone surrogate), with the characters an array
#: literal would have to escape (quotes, backslashes, braces, commas) likely to come up.
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00") | st.sampled_from('"\\{},'),
    min_size=1,
    max_size=40,
).filter(str.strip)  # payloads strip whitespace; all-blank text is refused, not stored
_WHEN = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    elements=st.lists(
        st.tuples(_TEXT, st.integers(-100, 100), _WHEN, st.integers(1, 100)), min_size=1, max_size=5
    )
)
async def test_every_field_of_every_job_is_stored_as_sent(
    store: Store, db_url: str, funded_user: uuid.UUID, elements: list[tuple[str, int, datetime | None, int]]
) -> None:
    """The batch travels as arrays in PostgreSQL's binary format (`job_create`): each
    element's payload, priority, run_at and max_attempts reach its own row unchanged."""
    jobs = [JobSpec("sentiment_analysis", {"text": t}, p, when, m) for t, p, when, m in elements]
    async with store.session() as s:
        created = await enqueue_many(s, user_id=funded_user, jobs=jobs)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            "select id, payload, priority, run_at, max_attempts, created_at from aijobs.jobs"
            " where id = any(%s)",
            ([c.id for c in created],),
        )
        rows = {row[0]: row[1:] for row in await cur.fetchall()}
    for job, c in zip(jobs, created, strict=True):
        payload, priority, run_at, max_attempts, created_at = rows[c.id]
        assert payload == validate_payload(job.type, job.payload)
        assert (priority, max_attempts) == (job.priority, job.max_attempts)
        assert run_at == c.run_at == (job.run_at or created_at)
