"""The tenant may be an organisation: with `settings.tenant_claim` (TENANT_CLAIM) naming a JWT
claim, the users of one organisation share one tenant's turns in the fair share and one limit
on running jobs, while each stays the owner of its jobs (credits, quota, reads)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from aijobs.db.store import Store
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.integration.test_fair_share import claim
from tests.reliability.test_direct_calls import as_user

ORG_A = uuid.UUID("0a0a0a0a-0000-4000-8000-00000000000a")
ORG_B = uuid.UUID("0b0b0b0b-0000-4000-8000-00000000000b")


def direct_create(db_url: str, user: uuid.UUID, org: uuid.UUID, n: int) -> list[uuid.UUID]:
    """n jobs in one creation, as a user calls create_jobs through Supabase's PostgREST."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        as_user(conn, user, claims={"org_id": str(org)})
        rows = conn.execute(
            "select id from aijobs.create_jobs(null, array_fill('sentiment_analysis'::text, array[%s]),"
            ' array_fill(\'{"text": "x"}\'::jsonb, array[%s]))',
            (n, n),
        ).fetchall()
    return [r[0] for r in rows]


async def org_users(store: Store, db_url: str, claim_path: str = "org_id") -> dict[str, uuid.UUID]:
    users = {name: uuid.uuid4() for name in ("a1", "a2", "b")}
    async with store.session() as s:
        for user in users.values():
            await s.accounts.grant_credits(user, 100)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update aijobs.settings set tenant_claim = %s", (claim_path,))
    return users


def claimed_tenants(db_url: str) -> str:
    """The claimed jobs' tenants as letters, in claim order."""
    name = {ORG_A: "A", ORG_B: "B"}
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select tenant from aijobs.jobs where lease_token is not null order by lease_token"
        ).fetchall()
    return "".join(name.get(r[0], "?") for r in rows)


async def test_two_users_of_one_organisation_share_its_turns(db_url: str, store: Store) -> None:
    users = await org_users(store, db_url)
    a1 = direct_create(db_url, users["a1"], ORG_A, 5)
    a2 = direct_create(db_url, users["a2"], ORG_A, 5)
    direct_create(db_url, users["b"], ORG_B, 5)
    order = [job for _ in range(15) for job in claim(db_url)]
    # A's ten jobs take one tenant's turns (a user each would have taken two of every three).
    assert claimed_tenants(db_url) == "AB" * 5 + "A" * 5
    # Within the organisation, its own order: a1's jobs, then a2's.
    assert [j for j in order if j in a1 or j in a2] == a1 + a2
    with psycopg.connect(db_url, autocommit=True) as conn:
        owners = conn.execute(
            "select user_id, tenant, count(*) from aijobs.jobs group by user_id, tenant order by 3, 1"
        ).fetchall()
        charged = conn.execute(
            "select user_id, balance from aijobs.accounts where user_id = any(%s)", (list(users.values()),)
        ).fetchall()
    # Each user stays the owner of its jobs and pays for them.
    assert sorted(owners) == sorted(
        [(users["a1"], ORG_A, 5), (users["a2"], ORG_A, 5), (users["b"], ORG_B, 5)]
    )
    assert dict(charged) == {u: 95 for u in users.values()}


async def test_an_organisations_limit_holds_across_its_users(db_url: str, store: Store) -> None:
    users = await org_users(store, db_url)
    async with store.session() as s:
        await s.accounts.set_max_running(ORG_A, 2)
    direct_create(db_url, users["a1"], ORG_A, 3)
    direct_create(db_url, users["a2"], ORG_A, 3)
    direct_create(db_url, users["b"], ORG_B, 3)
    for _ in range(3):
        claim(db_url, limit=20)
        with psycopg.connect(db_url, autocommit=True) as conn:
            rows = conn.execute(
                "select tenant, user_id, status::text, count(*) from aijobs.jobs group by 1, 2, 3"
            ).fetchall()
        counts = {(t, u, s): n for t, u, s, n in rows}
        assert sum(n for (t, _, s), n in counts.items() if t == ORG_A and s == "processing") == 2
        # Both of A's users still have jobs waiting: the limit is the organisation's.
        assert counts.get((ORG_A, users["a1"], "pending"), 0) == 1
        assert counts.get((ORG_A, users["a2"], "pending"), 0) == 3
        assert counts.get((ORG_B, users["b"], "processing"), 0) == 3
    async with store.session() as s:
        top = await s.monitoring.top_tenants(5)
    assert [(t["tenant"], t["pending"], t["processing"], t["max_running"]) for t in top] == [
        (ORG_A, 4, 2, 2),
        (ORG_B, 0, 3, None),
    ]


async def test_expedite_moves_a_job_first_in_its_organisations_order(db_url: str, store: Store) -> None:
    users = await org_users(store, db_url)
    direct_create(db_url, users["a1"], ORG_A, 2)
    (late,) = direct_create(db_url, users["a2"], ORG_A, 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select id from aijobs.expedite_job(%s)", (late,)).fetchall() == [(late,)]
    assert claim(db_url) == [late]


async def test_enqueue_names_the_tenant_for_trusted_callers(store: Store) -> None:
    user = uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(user, 10)
        spec = JobSpec("sentiment_analysis", {"text": "x"})
        (mine,) = await enqueue_many(s, user_id=user, jobs=[spec])
        (theirs,) = await enqueue_many(s, user_id=user, jobs=[spec], tenant=ORG_A)
        cur = await s.conn.execute(
            "select id, user_id, tenant from aijobs.jobs where id = any(%s)", ([mine.id, theirs.id],)
        )
        rows = {r[0]: r[1:] for r in await cur.fetchall()}
    assert rows == {mine.id: (user, user), theirs.id: (user, ORG_A)}


def test_migrate_writes_the_tenant_claim(db_url: str) -> None:
    from aijobs.config import load_settings
    from aijobs.db.migrate import DeploymentSettings, migrate

    def stored() -> Any:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute("select tenant_claim from aijobs.settings").fetchone()
        assert row is not None
        return row[0]

    migrate(
        db_url,
        settings=DeploymentSettings(max_jobs_in_flight_per_user=None, tenant_claim="app_metadata.org_id"),
    )
    assert stored() == "app_metadata.org_id"
    migrate(db_url, settings=DeploymentSettings(max_jobs_in_flight_per_user=None))
    assert stored() is None
    assert (
        load_settings(tenant_claim="app_metadata.org_id", _env_file=None).tenant_claim
        == "app_metadata.org_id"
    )
    assert load_settings(tenant_claim="", _env_file=None).tenant_claim is None


@pytest.mark.parametrize("claim_path", ["org-id", "a.b.c.d.e", "1org", "org_id.", "x" * 65])
def test_a_bad_tenant_claim_setting_is_refused_naming_it(claim_path: str) -> None:
    from aijobs.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as refused:
        load_settings(tenant_claim=claim_path, _env_file=None)
    assert "TENANT_CLAIM" in str(refused.value)
