"""Atomic credit consumption through aijobs.create_jobs, on a real database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import psycopg
import pytest

from aijobs.api.problems import from_domain
from aijobs.db.rows import CreatedJob
from aijobs.db.store import Store
from aijobs.errors import (
    InsufficientCredits,
    InvalidArgument,
    InvalidPayload,
    UnknownJobType,
    UnknownUser,
)
from aijobs.queue.enqueue import enqueue
from aijobs.queue.requests import MAX_CREDIT_GRANT
from tests.support.jobs import create_job

SENTIMENT = {"text": "Lovely staff, quick service."}


async def ledger_state(db_url: str, user: uuid.UUID) -> tuple[int, int, int]:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            """select a.balance,
                      (select coalesce(sum(amount), 0) from aijobs.credit_ledger l
                        where l.user_id = a.user_id),
                      (select count(*) from aijobs.jobs j where j.user_id = a.user_id)
               from aijobs.accounts a where a.user_id = %s""",
            (user,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


async def test_twenty_concurrent_creations_against_a_balance_of_five(store: Store, db_url: str) -> None:
    user = uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(user, 5)

    async def create() -> bool:
        async with store.session() as s:
            try:
                await enqueue(s, user_id=user, job_type="sentiment_analysis", payload=SENTIMENT)
            except InsufficientCredits:
                return False
            return True

    results = await asyncio.gather(*(create() for _ in range(20)))
    assert sum(results) == 5
    balance, ledger_sum, jobs = await ledger_state(db_url, user)
    assert (balance, ledger_sum, jobs) == (0, 0, 5)


async def test_refusals_are_typed_and_charge_nothing(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        with pytest.raises(UnknownJobType):
            await enqueue(s, user_id=funded_user, job_type="translate", payload={})
        with pytest.raises(UnknownUser):
            await create_job(s, user_id=uuid.uuid4(), type="sentiment_analysis", payload=SENTIMENT)
        with pytest.raises(InvalidPayload) as bad:
            await enqueue(s, user_id=funded_user, job_type="ai_generation", payload={"tone": "rude"})
    fields = {e["field"] for e in bad.value.errors}
    assert fields == {"review_text", "tone"}
    assert (await ledger_state(db_url, funded_user)) == (1000, 1000, 0)


async def test_created_job_fields_match_the_creation_functions(db_url: str) -> None:
    """`JobsRepo.create` builds `CreatedJob` by position, so the creation function must
    return its columns in the dataclass's field order (and the grouped one around them)."""
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            """select p.proname, array_agg(a.name order by a.ord)
               from pg_proc p,
                    unnest(p.proargnames, p.proargmodes) with ordinality as a(name, mode, ord)
               where p.pronamespace = 'aijobs'::regnamespace and p.proname = 'create_jobs'
                 and a.mode = 't'
               group by p.proname"""
        )
        returned = dict(await cur.fetchall())
        cur = await conn.execute(
            """select array_agg(a.name order by a.ord)
               from pg_proc p,
                    unnest(p.proargnames, p.proargmodes) with ordinality as a(name, mode, ord)
               where p.pronamespace = 'aijobs'::regnamespace and p.proname = 'create_jobs_grouped'
                 and a.mode = 't'"""
        )
        grouped = (await cur.fetchone() or [None])[0]
    fields = [f.name for f in dataclasses.fields(CreatedJob)]
    assert returned == {name: fields for name in returned}
    assert len(returned) == 1
    # `JobsRepo.create_grouped` reads the request's position, the job, the error.
    assert grouped == ["ord", *fields, "err_state", "err_message", "err_detail"]


async def test_one_session_creates_again_after_a_refusal(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """The session keeps one creation cursor: a refusal from SQL must not spoil the next
    creation, and each row read back must be the job that was just written."""
    async with store.session() as s:
        first = await enqueue(s, user_id=funded_user, job_type="sentiment_analysis", payload=SENTIMENT)
        with pytest.raises(UnknownUser):
            await create_job(s, user_id=uuid.uuid4(), type="sentiment_analysis", payload=SENTIMENT)
        second = await enqueue(
            s, user_id=funded_user, job_type="review_processing", payload={"review_text": "ok"}
        )
    assert first.id != second.id
    assert (first.cost, first.balance, first.created) == (1, 999, True)
    assert (second.cost, second.balance, second.status) == (3, 996, "pending")
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            "select id, type, created_at from aijobs.jobs where user_id = %s order by type", (funded_user,)
        )
        rows = await cur.fetchall()
    assert rows == [
        (second.id, "review_processing", second.created_at),
        (first.id, "sentiment_analysis", first.created_at),
    ]


async def test_concurrent_creations_on_one_session_each_read_their_own_row(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """Tasks sharing one session share its creation cursor; psycopg's connection lock runs
    them one at a time, and each must get back the row its own call wrote."""
    async with store.session() as s:
        created = await asyncio.gather(
            *(
                enqueue(s, user_id=funded_user, job_type="sentiment_analysis", payload={"text": f"t{i}"})
                for i in range(12)
            )
        )
    assert sorted(c.balance for c in created) == list(range(988, 1000))
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            "select id, payload->>'text' from aijobs.jobs where user_id = %s", (funded_user,)
        )
        texts = dict(await cur.fetchall())
    assert [texts[c.id] for c in created] == [f"t{i}" for i in range(12)]


async def test_insufficient_credits_names_balance_and_cost(store: Store) -> None:
    user = uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(user, 2)
        with pytest.raises(InsufficientCredits) as refused:
            await enqueue(s, user_id=user, job_type="review_processing", payload={"review_text": "ok"})
    assert (refused.value.balance, refused.value.cost) == (2, 3)


async def test_idempotency_key_replays_without_a_second_charge(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async def create() -> tuple[uuid.UUID, bool]:
        async with store.session() as s:
            job = await enqueue(
                s,
                user_id=funded_user,
                job_type="sentiment_analysis",
                payload=SENTIMENT,
                idempotency_key="k-1",
            )
            return job.id, job.created

    results = await asyncio.gather(*(create() for _ in range(10)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await ledger_state(db_url, funded_user) == (999, 999, 1)


async def test_ledger_is_append_only(store: Store, db_url: str, funded_user: uuid.UUID) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="append-only"):
            await conn.execute("update aijobs.credit_ledger set amount = 5")
        with pytest.raises(psycopg.Error, match="append-only"):
            await conn.execute("delete from aijobs.credit_ledger")


async def test_retry_of_names_only_the_callers_own_jobs(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """A user calling aijobs.create_jobs directly as `authenticated` (a Supabase
    RPC) may link the new job only to a job of their own: another user's job and an id that
    does not exist get the same AJ005 naming retry_of, and nothing is inserted or charged.
    A replay of an Idempotency-Key still returns its job first."""
    other = uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(other, 5)
        theirs = await enqueue(s, user_id=other, job_type="sentiment_analysis", payload=SENTIMENT)
        mine = await enqueue(s, user_id=funded_user, job_type="sentiment_analysis", payload=SENTIMENT)
    claims = {"sub": str(funded_user), "role": "authenticated", "aud": "authenticated"}
    before = await ledger_state(db_url, funded_user)

    refusals: list[InvalidArgument] = []
    for target in (theirs.id, uuid.uuid4()):
        with pytest.raises(InvalidArgument) as refused:
            async with store.as_user(claims) as s:
                await enqueue(
                    s, user_id=None, job_type="sentiment_analysis", payload=SENTIMENT, retry_of=target
                )
        refusals.append(refused.value)
    # Server-side callers (worker, CLI, admin) act for the user they name, under the same rule.
    with pytest.raises(InvalidArgument) as refused:
        async with store.session() as s:
            await enqueue(
                s, user_id=funded_user, job_type="sentiment_analysis", payload=SENTIMENT, retry_of=theirs.id
            )
    refusals.append(refused.value)
    # A single creation's refusal names the field without the batch's `jobs[0].`.
    assert {(r.message, r.details["field"], r.details["reason"]) for r in refusals} == {
        ("retry_of must name one of your jobs", "retry_of", "must name one of your jobs")
    }
    assert await ledger_state(db_url, funded_user) == before
    assert await ledger_state(db_url, other) == (4, 4, 1)

    # The API's answer names the field, as the body's.
    problem = from_domain(refusals[0])
    assert (problem.status, problem.code) == (422, "invalid_argument")
    assert problem.extra["errors"] == [{"field": "body.retry_of", "reason": "must name one of your jobs"}]

    key = f"retry-{uuid.uuid4()}"
    async with store.as_user(claims) as s:
        created = await create_job(
            s,
            user_id=None,
            type="sentiment_analysis",
            payload=SENTIMENT,
            idempotency_key=key,
            retry_of=mine.id,
        )
        # The key's job comes back whatever retry_of says now (the old job may have been pruned).
        replayed = await create_job(
            s,
            user_id=None,
            type="sentiment_analysis",
            payload=SENTIMENT,
            idempotency_key=key,
            retry_of=uuid.uuid4(),
        )
    assert created.created and not replayed.created and replayed.id == created.id
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        row = await (
            await conn.execute("select user_id, retry_of from aijobs.jobs where id = %s", (created.id,))
        ).fetchone()
    assert row == (funded_user, mine.id)
    assert await ledger_state(db_url, funded_user) == (before[0] - 1, before[1] - 1, before[2] + 1)


@pytest.mark.parametrize(
    ("amount", "note", "field"),
    [
        (0, "grant", "amount"),
        (1_000_000_001, "grant", "amount"),
        (None, "grant", "amount"),
        (5, "", "note"),
        (5, "n" * 201, "note"),
        (5, None, "note"),
    ],
)
def test_a_direct_grant_is_held_to_the_apis_bounds(
    db_url: str, amount: int | None, note: str | None, field: str
) -> None:
    """service_role may call grant_credits directly (a Supabase RPC): the same bounds as
    `POST /api/admin/credits` and `aijobs accounts grant`, and nothing is granted."""
    user = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("select aijobs.grant_credits(%s, %s, %s)", (user, amount, note))
        assert caught.value.sqlstate == "AJ005"
        assert json.loads(caught.value.diag.message_detail or "{}")["field"] == field
        assert conn.execute(
            "select count(*) from aijobs.credit_ledger where user_id = %s", (user,)
        ).fetchone() == (0,)
        assert conn.execute(
            "select aijobs.grant_credits(%s, %s, %s)", (user, MAX_CREDIT_GRANT, "n" * 200)
        ).fetchone() == (MAX_CREDIT_GRANT,)


def test_a_grant_with_a_key_is_made_once(db_url: str) -> None:
    """A payment webhook delivered twice: the second grant with the same key grants nothing
    and answers the balance the first left; the key with another amount is refused (AJ008)
    and another user's key is that user's own."""
    user, other = uuid.uuid4(), uuid.uuid4()
    grant = "select aijobs.grant_credits(%s, %s, %s, %s)"
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(grant, (user, 100, "evt_1", "evt_1")).fetchone() == (100,)
        assert conn.execute(grant, (user, 5, "plain", None)).fetchone() == (105,)
        assert conn.execute(grant, (user, 100, "evt_1", "evt_1")).fetchone() == (100,)
        with pytest.raises(psycopg.Error) as reused:
            conn.execute(grant, (user, 200, "evt_1", "evt_1"))
        assert reused.value.sqlstate == "AJ008"
        assert json.loads(reused.value.diag.message_detail or "{}")["field"] == "key"
        with pytest.raises(psycopg.Error) as bad:
            conn.execute(grant, (user, 1, "x", "\t"))
        assert bad.value.sqlstate == "AJ005"
        assert conn.execute(grant, (other, 7, "evt_1", "evt_1")).fetchone() == (7,)
        ledger = conn.execute(
            "select user_id, amount from aijobs.credit_ledger where user_id in (%s, %s) order by id",
            (user, other),
        ).fetchall()
        assert ledger == [(user, 100), (user, 5), (other, 7)]
        assert conn.execute("select balance from aijobs.accounts where user_id = %s", (user,)).fetchone() == (
            105,
        )


async def test_concurrent_grants_with_one_key_grant_once(db_url: str) -> None:
    user = uuid.uuid4()

    async def grant() -> int:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            row = await (
                await conn.execute("select aijobs.grant_credits(%s, 10, 'evt', 'evt_9')", (user,))
            ).fetchone()
            assert row is not None
            return int(row[0])

    assert await asyncio.gather(*(grant() for _ in range(8))) == [10] * 8
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        row = await (
            await conn.execute("select count(*) from aijobs.credit_ledger where user_id = %s", (user,))
        ).fetchone()
    assert row == (1,)
