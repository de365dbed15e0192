"""Group commit of the API's creations (aijobs.create_jobs_grouped and
aijobs/api/grouped_creation.py), on a real database: each request of a group is made for its
own user and refused on its own, groups
cannot deadlock one another, and the batcher groups what waits, leaves out what was
cancelled and answers every request of a failed statement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest

from aijobs.api.grouped_creation import MAX_GROUP, CreationGroups
from aijobs.db.rows import CreatedJob, GroupedCreation, JobSpec
from aijobs.db.store import Store
from aijobs.errors import InsufficientCredits, InvalidArgument, TooManyInFlight, UnknownJobType
from tests.support import locks
from tests.support.snapshots import snapshot

SENTIMENT = {"text": "Lovely staff, quick service."}


def request(user: uuid.UUID, job_type: str = "sentiment_analysis") -> GroupedCreation:
    return GroupedCreation(user, JobSpec(job_type, SENTIMENT))


async def set_cap(store: Store, max_in_flight: int) -> None:
    """The deployment's in-flight quota, which every grouped creation is held to."""
    async with store.session() as s:
        await s.sync_settings(max_jobs_in_flight_per_user=max_in_flight)


async def funded(store: Store, *amounts: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in amounts]
    async with store.session() as s:
        for user, amount in zip(users, amounts, strict=True):
            await s.accounts.grant_credits(user, amount)
    return users


@asynccontextmanager
async def account_locked(db_url: str, user: uuid.UUID) -> AsyncIterator[None]:
    """Another transaction holds `user`'s account row until the block ends: a creation for
    that user waits inside its statement, holding what it took before."""
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute("select 1 from aijobs.accounts where user_id = %s for update", (user,))
        yield
        await conn.commit()


async def waiting_on_locks(db_url: str, count: int) -> None:
    await locks.waiting_on_locks(db_url, count, "aijobs-test")


async def test_each_request_of_a_group_is_made_as_its_own_user_and_refused_alone(
    store: Store, db_url: str
) -> None:
    rich, poor = await funded(store, 1000, 1)
    await set_cap(store, 10)
    group = [request(rich), request(poor), request(poor), request(rich), request(rich, "translate")]
    async with store.session() as s:
        owner = (await (await s.conn.execute("select current_user")).fetchone() or [None])[0]
        outcomes = await s.jobs.create_grouped(group)
        after = await (
            await s.conn.execute(
                "select current_user, current_setting('role'),"
                " coalesce(current_setting('request.jwt.claims', true), '')"
            )
        ).fetchone()
    # No role or claims outlive the statement: the pooled connection's next borrower runs
    # as the owner, without claims.
    assert after == (owner, "none", "")
    made, poor_ok, refused, made_too, unknown = outcomes
    assert (
        isinstance(made, CreatedJob) and isinstance(poor_ok, CreatedJob) and isinstance(made_too, CreatedJob)
    )
    assert isinstance(refused, InsufficientCredits) and (refused.balance, refused.cost) == (0, 1)
    assert isinstance(unknown, UnknownJobType)
    assert (made.balance, made_too.balance, poor_ok.balance) == (999, 998, 0)
    # Each job and debit belongs to the user its request names; the refusals left nothing.
    assert (await snapshot(db_url, rich)).balance == 998
    assert (await snapshot(db_url, rich)).jobs == 2
    assert (await snapshot(db_url, poor)).jobs == 1
    assert (await snapshot(db_url, poor)).balance == 0
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        owners = dict(await (await conn.execute("select id, user_id from aijobs.jobs")).fetchall())
    assert owners == {made.id: rich, made_too.id: rich, poor_ok.id: poor}


async def test_the_cap_counts_the_jobs_made_earlier_in_the_same_group(store: Store, db_url: str) -> None:
    (user,) = await funded(store, 100)
    await set_cap(store, 2)
    async with store.session() as s:
        outcomes = await s.jobs.create_grouped([request(user)] * 3)
    assert [type(o) for o in outcomes] == [CreatedJob, CreatedJob, TooManyInFlight]
    capped = outcomes[2]
    assert isinstance(capped, TooManyInFlight) and (capped.in_flight, capped.limit) == (2, 2)
    assert (await snapshot(db_url, user)).jobs == 2


async def test_a_group_larger_than_32_is_refused_whole(store: Store, db_url: str) -> None:
    """The SQL function's limit is the batcher's MAX_GROUP: a full group passes, one more
    is refused whole."""
    (user,) = await funded(store, 100)
    await set_cap(store, 100)
    async with store.session() as s:
        with pytest.raises(psycopg.Error, match="at most 32"):
            await s.jobs.create_grouped([request(user)] * (MAX_GROUP + 1))
        assert (await snapshot(db_url, user)).jobs == 0
        full = await s.jobs.create_grouped([request(user)] * MAX_GROUP)
    assert all(isinstance(o, CreatedJob) for o in full)
    assert (await snapshot(db_url, user)).jobs == MAX_GROUP == 32


async def test_groups_in_opposite_user_orders_do_not_deadlock(store: Store, db_url: str) -> None:
    """Group 1 takes A's account row, then B's; group 2 names B first. Taken in request
    order, group 2 would hold B's row and wait for A's while group 1 holds A's and waits for
    B's: a deadlock, one request answered with 40P01 after `deadlock_timeout`. Taken in user
    order, group 2 waits for A first, holding nothing, and both groups complete."""
    a, b = sorted(await funded(store, 10, 10), key=str)
    await set_cap(store, 10)
    async with store.session() as first, store.session() as second:
        async with account_locked(db_url, a):
            one = asyncio.create_task(first.jobs.create_grouped([request(a), request(b)]))
            await waiting_on_locks(db_url, 1)  # waits for A's row, holding nothing yet
            two = asyncio.create_task(second.jobs.create_grouped([request(b), request(a)]))
            await waiting_on_locks(db_url, 2)
        outcomes = await asyncio.wait_for(asyncio.gather(one, two), timeout=30)
    assert all(isinstance(o, CreatedJob) for group in outcomes for o in group), outcomes
    assert (await snapshot(db_url, a)).balance == 8
    assert (await snapshot(db_url, b)).balance == 8


async def test_groups_whose_users_share_tenants_do_not_deadlock(store: Store, db_url: str) -> None:
    """Users 1 and 4 share tenant A, users 2 and 3 tenant B; group 1 is (1, 3), group 2 is
    (2, 4), and tenant B's row is held while both start, group 2 first. Taken in user order,
    group 1 would hold A's row waiting for B's while group 2, given B's first, waits for A's: a
    deadlock. Every account locked first and the creations in tenant order: group 2 holds A's
    row and waits for B's, group 1 waits for A's holding only accounts, and both complete."""
    u1, u2, u3, u4 = sorted(await funded(store, 10, 10, 10, 10), key=str)
    ta, tb = uuid.uuid4(), uuid.uuid4()
    async with store.session() as s:
        for tenant in (ta, tb):
            await s.accounts.set_weight(tenant, 1)  # the rows exist: creations update them
    spec = JobSpec("sentiment_analysis", SENTIMENT)
    group1 = [GroupedCreation(u1, spec, ta), GroupedCreation(u3, spec, tb)]
    group2 = [GroupedCreation(u2, spec, tb), GroupedCreation(u4, spec, ta)]
    async with store.session() as first, store.session() as second:
        async with await psycopg.AsyncConnection.connect(db_url) as holder:
            await holder.execute("select from aijobs.tenants where tenant = %s for update", (tb,))
            two = asyncio.create_task(second.jobs.create_grouped(group2))
            await waiting_on_locks(db_url, 1)
            one = asyncio.create_task(first.jobs.create_grouped(group1))
            await waiting_on_locks(db_url, 2)
            await holder.commit()
        outcomes = await asyncio.wait_for(asyncio.gather(one, two), timeout=30)
    assert all(isinstance(o, CreatedJob) for group in outcomes for o in group), outcomes
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select user_id, tenant from aijobs.jobs where user_id = any(%s)", ([u1, u2, u3, u4],)
        ).fetchall()
    assert sorted(rows) == sorted([(u1, ta), (u2, tb), (u3, tb), (u4, ta)])


async def test_a_request_for_another_users_job_is_refused_inside_a_group(store: Store, db_url: str) -> None:
    """retry_of is checked as the element's own user, not as the group's owner role."""
    mine, theirs = await funded(store, 10, 10)
    await set_cap(store, 10)
    async with store.session() as s:
        (their_job,) = await s.jobs.create_grouped([request(theirs)])
        assert isinstance(their_job, CreatedJob)
        stolen = GroupedCreation(mine, JobSpec("sentiment_analysis", SENTIMENT, retry_of=their_job.id))
        (outcome,) = await s.jobs.create_grouped([stolen])
    assert isinstance(outcome, InvalidArgument)
    assert (await snapshot(db_url, mine)).jobs == 0


async def test_requests_that_wait_together_share_one_statement(store: Store, db_url: str) -> None:
    blocker, *users = await funded(store, 10, *([10] * 8))
    await set_cap(store, 10)
    groups = CreationGroups(store, max_statements=1)
    async with account_locked(db_url, blocker):
        first = asyncio.create_task(groups.create(request(blocker)))
        await waiting_on_locks(db_url, 1)
        rest = [asyncio.create_task(groups.create(request(u))) for u in users]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in rest)  # queued behind the one statement allowed
    made = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=30)
    assert all(job.created for job in made)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            # now() is the transaction's start: one value for every job one transaction made
            # (xmin would not do: each element has a subtransaction, and an xid, of its own).
            "select count(distinct created_at) from aijobs.jobs where user_id = any(%s)",
            (users,),
        )
        row = await cur.fetchone()
    assert row == (1,)  # one transaction made all eight


async def test_a_request_cancelled_before_its_group_is_sent_is_not_created(store: Store, db_url: str) -> None:
    blocker, kept, dropped = await funded(store, 10, 10, 10)
    await set_cap(store, 10)
    groups = CreationGroups(store, max_statements=1)
    async with account_locked(db_url, blocker):
        first = asyncio.create_task(groups.create(request(blocker)))
        await waiting_on_locks(db_url, 1)
        stays = asyncio.create_task(groups.create(request(kept)))
        leaves = asyncio.create_task(groups.create(request(dropped)))
        await asyncio.sleep(0.05)
        leaves.cancel()
    await asyncio.wait_for(asyncio.gather(first, stays), timeout=30)
    with pytest.raises(asyncio.CancelledError):
        await leaves
    await groups.aclose()
    assert (await snapshot(db_url, kept)).jobs == 1
    dropped_state = await snapshot(db_url, dropped)
    assert (dropped_state.jobs, dropped_state.balance) == (0, 10)


async def test_every_request_of_a_failed_statement_gets_its_error_and_none_is_created(
    store: Store, db_url: str
) -> None:
    """The group's backend is terminated while the statement waits: both requests of the
    group get the connection's error, and neither job nor debit was committed."""
    blocker, waits, other = await funded(store, 10, 10, 10)
    await set_cap(store, 10)
    groups = CreationGroups(store, max_statements=1)
    async with account_locked(db_url, blocker):
        first = asyncio.create_task(groups.create(request(blocker)))
        await waiting_on_locks(db_url, 1)
        async with account_locked(db_url, waits):
            group = [asyncio.create_task(groups.create(request(u))) for u in (waits, other)]
            await asyncio.sleep(0.05)
            await locks.terminate_lock_waiters(db_url, "aijobs-test")
            with pytest.raises(psycopg.OperationalError):
                await first  # the blocker's own statement, terminated first
            await waiting_on_locks(db_url, 1)  # the group of two now waits for `waits`
            await locks.terminate_lock_waiters(db_url, "aijobs-test")
            results = await asyncio.wait_for(asyncio.gather(*group, return_exceptions=True), timeout=30)
    assert all(isinstance(r, psycopg.OperationalError) for r in results), results
    for user in (blocker, waits, other):
        state = await snapshot(db_url, user)
        assert (state.jobs, state.balance) == (0, 10)


async def test_a_request_right_after_a_sender_finished_is_sent(store: Store, db_url: str) -> None:
    """The first request's answer wakes it before its sender's task has been reaped (a
    done-callback, a loop turn later): a request made at once must still find a sender."""
    first, second = await funded(store, 10, 10)
    await set_cap(store, 10)
    groups = CreationGroups(store, max_statements=1)
    await groups.create(request(first))
    # Awaited inline (not through wait_for, which would start it in a task a turn later).
    async with asyncio.timeout(10):
        made = await groups.create(request(second))
    assert made.created
    await groups.aclose()
    assert (await snapshot(db_url, second)).jobs == 1


async def test_grouped_creation_refuses_to_run_inside_a_transaction(store: Store, db_url: str) -> None:
    """Each request is a subtransaction of the statement's own transaction: inside the
    caller's, the group's requests would commit or roll back with the caller's work."""
    (user,) = await funded(store, 10)
    async with store.transaction() as s:
        await s.conn.execute("select 1")
        with pytest.raises(RuntimeError, match="autocommit"):
            await s.jobs.create_grouped([request(user)])
    assert (await snapshot(db_url, user)).jobs == 0
