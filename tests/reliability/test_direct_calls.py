"""Direct calls, as Supabase's PostgREST makes them: `authenticated` with a user's JWT claims
set locally, calling every function that role may execute. Whatever the HTTP API refuses is
refused here, limits come from the deployment's settings, acting for another user needs
membership (not a role's name), and the API's own tables are not writable."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.snapshots import snapshot

USER = uuid.UUID("11111111-2222-4333-8444-555555555555")
OTHER = uuid.UUID("66666666-7777-4888-8999-aaaaaaaaaaaa")

#: Every function `authenticated` may execute, and the test below that calls it directly.
GRANTED_TO_AUTHENTICATED = {
    "aijobs.create_jobs(uuid,text[],jsonb[],smallint[],timestamp with time zone[],integer[],text[],uuid[],"
    "boolean,uuid)",
    "aijobs.cancel_job(uuid,uuid)",
}


@pytest.fixture
def owner(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for user in (USER, OTHER):
            conn.execute("select aijobs.grant_credits(%s, 1000, 'test')", (user,))
        yield conn


def as_user(
    conn: psycopg.Connection[Any],
    user: uuid.UUID,
    role: str = "authenticated",
    claims: dict[str, Any] | None = None,
) -> None:
    """What PostgREST does for a request: its role and the JWT's claims, local to the transaction."""
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        (role, json.dumps({"sub": str(user), "role": "authenticated", **(claims or {})})),
    )


def direct_create(
    db_url: str,
    *,
    user: uuid.UUID = USER,
    role: str = "authenticated",
    user_id: uuid.UUID | None = None,
    types: list[str] | None = None,
    payloads: list[Any] | None = None,
    claims: dict[str, Any] | None = None,
    tenant: uuid.UUID | None = None,
    **arrays: Any,
) -> list[tuple[Any, ...]]:
    types = types if types is not None else ["sentiment_analysis"]
    payloads = payloads if payloads is not None else [{"text": "fine"}]
    with psycopg.connect(db_url) as conn, conn.transaction():
        as_user(conn, user, role, claims)
        return conn.execute(
            """select id, created from aijobs.create_jobs(
                   %(user_id)s, %(types)s, %(payloads)s::jsonb[], %(priorities)s::smallint[],
                   %(run_ats)s::timestamptz[], %(max_attempts)s::integer[], %(keys)s::text[],
                   %(retry_ofs)s::uuid[], %(quota)s, %(tenant)s)""",
            {
                "user_id": user_id,
                "types": types,
                "payloads": [p if isinstance(p, str) else json.dumps(p) for p in payloads],
                "priorities": arrays.get("priorities"),
                "run_ats": arrays.get("run_ats"),
                "max_attempts": arrays.get("max_attempts"),
                "keys": arrays.get("keys"),
                "retry_ofs": arrays.get("retry_ofs"),
                "quota": arrays.get("quota", False),
                "tenant": tenant,
            },
        ).fetchall()


def test_the_functions_granted_to_users_are_exactly_the_ones_tested_here(
    owner: psycopg.Connection[Any],
) -> None:
    granted = owner.execute(
        """select p.oid::regprocedure::text from pg_proc p
           where p.pronamespace in ('aijobs'::regnamespace, 'public'::regnamespace)
             and (has_function_privilege('authenticated', p.oid, 'EXECUTE')
                  or has_function_privilege('anon', p.oid, 'EXECUTE'))"""
    ).fetchall()
    assert {name.replace(", ", ",") for (name,) in granted} == {
        n.replace(", ", ",") for n in GRANTED_TO_AUTHENTICATED
    }


def test_a_user_creates_and_cancels_their_own_jobs_directly(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    rows = direct_create(db_url)
    assert len(rows) == 1 and rows[0][1] is True
    with psycopg.connect(db_url) as conn, conn.transaction():
        as_user(conn, USER)
        cancelled = conn.execute("select status::text from aijobs.cancel_job(%s)", (rows[0][0],)).fetchall()
    assert cancelled == [("cancelled",)]
    with psycopg.connect(db_url) as conn, conn.transaction():
        as_user(conn, OTHER)
        # Another user's job: nothing happens and nothing tells whether it exists.
        assert conn.execute("select * from aijobs.cancel_job(%s)", (rows[0][0],)).fetchall() == []
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select * from aijobs.cancel_job(%s, %s)", (rows[0][0], USER))
        assert refused.value.sqlstate == "AJ004"


DEEP: dict[str, Any] = {"v": 1}
for _ in range(33):
    DEEP = {"n": DEEP}

#: (what is passed, the field named, a word of the reason): each refused as the API refuses it.
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    ("payload too large", {"payloads": [{"text": "x" * 70000}]}, "jobs[0].payload", "65536"),
    ("payload nested too deep", {"payloads": [DEEP]}, "jobs[0].payload", "32 levels"),
    ("number too long", {"payloads": ['{"text": "a", "n": 1e400}']}, "jobs[0].payload", "number"),
    ("payload not an object", {"payloads": ["[1, 2]"]}, "jobs[0].payload", "object"),
    ("payload null", {"payloads": ["null"]}, "jobs[0].payload", "object"),
    ("run_at infinity", {"run_ats": ["infinity"]}, "jobs[0].run_at", "finite"),
    ("run_at -infinity", {"run_ats": ["-infinity"]}, "jobs[0].run_at", "finite"),
    ("run_at past year 9998", {"run_ats": ["9999-06-01T00:00:00Z"]}, "jobs[0].run_at", "finite"),
    ("run_at before 1970", {"run_ats": ["1969-12-31T00:00:00Z"]}, "jobs[0].run_at", "finite"),
    ("priority over 100", {"priorities": [101]}, "jobs[0].priority", "-100"),
    ("priority under -100", {"priorities": [-101]}, "jobs[0].priority", "-100"),
    ("max_attempts 0", {"max_attempts": [0]}, "jobs[0].max_attempts", "1 and 100"),
    ("max_attempts 101", {"max_attempts": [101]}, "jobs[0].max_attempts", "1 and 100"),
    ("empty idempotency key", {"keys": [""]}, "jobs[0].idempotency_key", "printable"),
    ("non-ASCII idempotency key", {"keys": ["clé"]}, "jobs[0].idempotency_key", "printable"),
    ("idempotency key too long", {"keys": ["k" * 256]}, "jobs[0].idempotency_key", "printable"),
    ("no jobs", {"types": [], "payloads": []}, "jobs", "1 to 10000"),
    ("arrays of different lengths", {"priorities": [0, 0]}, "jobs", "one element per job"),
    (
        "a second job bad",
        {"types": ["sentiment_analysis"] * 2, "payloads": [{"text": "ok"}, "[]"]},
        "jobs[1].payload",
        "object",
    ),
]


@pytest.mark.parametrize(("case", "arguments", "field", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_every_value_the_api_refuses_is_refused_on_a_direct_call(
    owner: psycopg.Connection[Any], db_url: str, case: str, arguments: dict[str, Any], field: str, reason: str
) -> None:
    before = await snapshot(db_url, USER)
    with pytest.raises(psycopg.Error) as refused:
        direct_create(db_url, **arguments)
    assert refused.value.sqlstate == "AJ005", case
    detail = json.loads(refused.value.diag.message_detail or "{}")
    assert detail["field"] == field
    assert reason in detail["reason"]
    assert await snapshot(db_url, USER) == before


def test_unknown_types_other_users_and_other_users_jobs_are_refused(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    with pytest.raises(psycopg.Error) as unknown:
        direct_create(db_url, types=["no_such_type"])
    assert unknown.value.sqlstate == "AJ001"
    with pytest.raises(psycopg.Error) as impersonation:
        direct_create(db_url, user_id=OTHER)
    assert impersonation.value.sqlstate == "AJ004"
    theirs = owner.execute(
        "select id from aijobs.create_jobs(%s, array['sentiment_analysis'], array['{}'::jsonb])",
        (OTHER,),
    ).fetchone()
    assert theirs is not None
    with pytest.raises(psycopg.Error) as linked:
        direct_create(db_url, retry_ofs=[theirs[0]])
    assert linked.value.sqlstate == "AJ005"
    assert json.loads(linked.value.diag.message_detail or "{}")["field"] == "jobs[0].retry_of"


def test_the_quota_comes_from_the_deployment_and_a_user_cannot_opt_out(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    owner.execute("update aijobs.settings set max_jobs_in_flight_per_user = 2")
    direct_create(db_url, types=["sentiment_analysis"] * 2, payloads=[{"text": "a"}, {"text": "b"}])
    for quota in (False, True):
        with pytest.raises(psycopg.Error) as over:
            direct_create(db_url, quota=quota)
        assert over.value.sqlstate == "AJ006"
        assert json.loads(over.value.diag.message_detail or "{}") == {"in_flight": 2, "limit": 2}
    # The owner (the worker, the CLI) is not held to it unless it asks.
    owner.execute(
        "select aijobs.create_jobs(%s, array['sentiment_analysis'], array['{\"text\": \"c\"}'::jsonb])",
        (USER,),
    )


def test_a_role_that_inherits_authenticated_is_not_trusted(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    role = f"aj_custom_{uuid.uuid4().hex[:10]}"
    owner.execute(f"create role {role} nologin inherit")
    try:
        owner.execute(f"grant authenticated to {role}")
        owner.execute("update aijobs.settings set max_jobs_in_flight_per_user = 1")
        with pytest.raises(psycopg.Error) as impersonation:
            direct_create(db_url, role=role, user_id=OTHER)
        assert impersonation.value.sqlstate == "AJ004"
        assert direct_create(db_url, role=role)[0][1] is True
        with pytest.raises(psycopg.Error) as over:
            direct_create(db_url, role=role)
        assert over.value.sqlstate == "AJ006"
        with psycopg.connect(db_url) as conn, conn.transaction():
            as_user(conn, USER, role)
            # A trusted caller may cancel any job without naming a user; this one sees none.
            any_job = owner.execute(
                "select id from aijobs.jobs where user_id = %s limit 1", (OTHER,)
            ).fetchone()
            if any_job is None:
                owner.execute(
                    "select aijobs.create_jobs(%s, array['sentiment_analysis'], array['{}'::jsonb])",
                    (OTHER,),
                )
                any_job = owner.execute("select id from aijobs.jobs where user_id = %s", (OTHER,)).fetchone()
            assert any_job is not None
            assert conn.execute("select * from aijobs.cancel_job(%s)", (any_job[0],)).fetchall() == []
    finally:
        owner.execute(f"drop owned by {role}")
        owner.execute(f"drop role {role}")


def test_users_may_write_no_table_and_call_no_owner_function(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    writable = owner.execute(
        """select c.relname, p.priv from pg_class c
           cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as p(priv)
           where c.relnamespace = 'aijobs'::regnamespace and c.relkind = 'r'
             and (has_table_privilege('authenticated', c.oid, p.priv)
                  or has_table_privilege('anon', c.oid, p.priv))"""
    ).fetchall()
    assert writable == []
    statements = [
        (
            "insert into aijobs.api_idempotency_keys (user_id, key, request_hash) values (%s, 'k', 'h')",
            (USER,),
        ),
        ("update aijobs.accounts set balance = 10000 where user_id = %s", (USER,)),
        ("select aijobs.grant_credits(%s, 5)", (USER,)),
        (
            "select * from aijobs.create_jobs_grouped(array[%s]::uuid[], array['sentiment_analysis'],"
            " array['{}'::jsonb], null, null, null, null)",
            (OTHER,),
        ),
        ("select * from aijobs.provider_budget_reserve('openai', 1, 1, 1, 60)", None),
        ("select aijobs.acting_user(%s, true)", (OTHER,)),
        ("select * from aijobs.claim_jobs('w', 10, 30)", None),
        ("select * from aijobs.finish_attempts('w', '[]')", None),
        ("select * from aijobs.claim_room(array[%s]::uuid[], array[1])", (USER,)),
        (
            "select * from aijobs.claim_type_room(array[%s]::uuid[], array['sentiment_analysis'], array[1])",
            (USER,),
        ),
        ("select aijobs.acting_tenant(%s, %s)", (OTHER, USER)),
        ("update aijobs.settings set tenant_claim = 'org_id'", None),
        ("select * from aijobs.take_turns(%s, 1)", (USER,)),
        ("select aijobs.turn_due_jobs(10)", None),
    ]
    for statement, params in statements:
        with psycopg.connect(db_url) as conn, conn.transaction():
            as_user(conn, USER)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, params)


ORG = uuid.UUID("0f0f0f0f-1111-4222-8333-444444444444")
OTHER_ORG = uuid.UUID("0e0e0e0e-5555-4666-8777-888888888888")


def tenants_of(owner: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> list[uuid.UUID]:
    found = owner.execute(
        "select tenant from aijobs.jobs where id = any(%s) order by id", ([r[0] for r in rows],)
    ).fetchall()
    return [t for (t,) in found]


def test_without_a_tenant_claim_the_tenant_is_the_user_and_cannot_be_chosen(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    """TENANT_CLAIM unset: an org claim in the token changes nothing, and naming a tenant other
    than the user is refused as acting for another user is."""
    rows = direct_create(db_url, claims={"org_id": str(ORG)})
    assert tenants_of(owner, rows) == [USER]
    assert tenants_of(owner, direct_create(db_url, tenant=USER)) == [USER]
    with pytest.raises(psycopg.Error) as chosen:
        direct_create(db_url, tenant=ORG, claims={"org_id": str(ORG)})
    assert chosen.value.sqlstate == "AJ004"
    assert "tenant" in chosen.value.diag.message_primary


@pytest.mark.parametrize("path", ["org_id", "app_metadata.org_id"])
def test_with_a_tenant_claim_a_user_creates_for_its_organisation_only(
    owner: psycopg.Connection[Any], db_url: str, path: str
) -> None:
    owner.execute("update aijobs.settings set tenant_claim = %s", (path,))
    claims: dict[str, Any] = {"org_id": str(ORG)}
    for name in reversed(path.split(".")[:-1]):
        claims = {name: claims}
    rows = direct_create(
        db_url, claims=claims, types=["sentiment_analysis"] * 2, payloads=[{"text": "a"}] * 2
    )
    assert tenants_of(owner, rows) == [ORG, ORG]
    # Naming its own tenant is allowed; any other (another org, or the user itself) is not.
    assert tenants_of(owner, direct_create(db_url, claims=claims, tenant=ORG)) == [ORG]
    before = owner.execute("select count(*) from aijobs.jobs").fetchone()
    for other in (OTHER_ORG, USER):
        with pytest.raises(psycopg.Error) as chosen:
            direct_create(db_url, claims=claims, tenant=other)
        assert chosen.value.sqlstate == "AJ004", other
    # Without the claim in its token, the user is its own tenant (and may not name the org).
    assert tenants_of(owner, direct_create(db_url)) == [USER]
    with pytest.raises(psycopg.Error) as chosen:
        direct_create(db_url, tenant=ORG)
    assert chosen.value.sqlstate == "AJ004"
    after = owner.execute("select count(*) from aijobs.jobs").fetchone()
    assert after is not None and before is not None and after[0] == before[0] + 1
    # A trusted caller names any tenant, or takes the user's.
    trusted = owner.execute(
        "select id, created from aijobs.create_jobs(%s, array['sentiment_analysis'], array['{}'::jsonb],"
        " p_tenant => %s)",
        (USER, OTHER_ORG),
    ).fetchall()
    assert tenants_of(owner, trusted) == [OTHER_ORG]
    trusted = owner.execute(
        "select id, created from aijobs.create_jobs(%s, array['sentiment_analysis'], array['{}'::jsonb])",
        (USER,),
    ).fetchall()
    assert tenants_of(owner, trusted) == [USER]


#: Values of the tenant claim that are not a tenant: each refused, naming `tenant` and the claim.
BAD_CLAIMS: list[tuple[str, Any]] = [
    ("not a uuid", "acme"),
    ("a number", 42),
    ("an object", {"id": str(ORG)}),
    ("an array", [str(ORG)]),
    ("a uuid without hyphens", ORG.hex),
    ("a uuid in braces", "{" + str(ORG) + "}"),
    ("a uuid with spaces", " " + str(ORG)),
    ("empty", ""),
]


@pytest.mark.parametrize(("case", "value"), BAD_CLAIMS, ids=[c[0] for c in BAD_CLAIMS])
async def test_a_tenant_claim_that_is_not_a_uuid_is_refused(
    owner: psycopg.Connection[Any], db_url: str, case: str, value: Any
) -> None:
    owner.execute("update aijobs.settings set tenant_claim = 'app_metadata.org_id'")
    before = await snapshot(db_url, USER)
    for tenant in (None, ORG):
        with pytest.raises(psycopg.Error) as refused:
            direct_create(db_url, claims={"app_metadata": {"org_id": value}}, tenant=tenant)
        assert refused.value.sqlstate == "AJ005", case
        detail = json.loads(refused.value.diag.message_detail or "{}")
        assert detail["field"] == "tenant"
        assert "app_metadata.org_id" in detail["reason"] and "uuid" in detail["reason"]
    assert await snapshot(db_url, USER) == before


def test_a_json_null_claim_or_a_path_through_a_non_object_is_an_absent_claim(
    owner: psycopg.Connection[Any], db_url: str
) -> None:
    owner.execute("update aijobs.settings set tenant_claim = 'app_metadata.org_id'")
    assert tenants_of(owner, direct_create(db_url, claims={"app_metadata": {"org_id": None}})) == [USER]
    assert tenants_of(owner, direct_create(db_url, claims={"app_metadata": "x"})) == [USER]


@pytest.mark.parametrize("claim", ["", "1org", "org-id", "a.b.c.d.e", "a..b", "x" * 65, "org_id."])
def test_the_tenant_claim_setting_is_bounded(owner: psycopg.Connection[Any], claim: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        owner.execute("update aijobs.settings set tenant_claim = %s", (claim,))
