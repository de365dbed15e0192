"""Scenario 10: hostile callers over real HTTP, and the database's own guarantees in its catalog.

* JWT fuzz: every forged, stale, misaddressed or malformed token is a 401 and writes nothing
  (hand-picked attacks plus Hypothesis-generated tokens and headers).
* Cross-tenant: user A reaches none of B's jobs through any endpoint (404, as if absent),
  and nothing of B's changes.
* Catalog: the API role is not an owner and cannot bypass RLS, RLS is forced on every
  table, SECURITY DEFINER functions pin search_path, NOTIFY carries no user text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aijobs.api.pagination import job_cursor
from aijobs.config import Settings
from aijobs.db.migrate import migrate
from aijobs.db.store import Store
from tests.reliability.api_support import StartApi
from tests.support.api_server import JWT_SECRET, SERVICE_KEY
from tests.support.database import drop_database, job_type_rows, with_dbname
from tests.support.invariants import assert_invariants, assert_invariants_sync
from tests.support.snapshots import total_rows
from tests.support.workers import job, running_worker, wait_until

ISSUER = "https://project.supabase.co/auth/v1"
SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(user: uuid.UUID, **changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": str(user),
        "aud": "authenticated",
        "role": "authenticated",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hmac_token(header: dict[str, object], body: dict[str, object], key: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(header: dict[str, object], body: dict[str, object]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}."


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def expect_401_everywhere(api_url: str, token: str, name: str, *, raw: bool = False) -> None:
    """The token (or, `raw`, the whole Authorization value) on reads, writes and a stream:
    401 problem+json each time."""
    auth = token if raw else f"Bearer {token}"
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for method, path, body in (
            ("POST", "/api/jobs", SENTIMENT),
            ("GET", "/api/me", None),
            ("GET", "/api/jobs", None),
            ("GET", f"/api/jobs/{uuid.uuid4()}/events", None),
            ("POST", f"/api/jobs/{uuid.uuid4()}/cancel", None),
        ):
            response = await http.request(method, path, json=body, headers={"Authorization": auth})
            assert response.status_code == 401, (name, path, response.status_code, response.text)
            assert response.headers["content-type"] == "application/problem+json", name


async def test_forged_and_stale_tokens_are_401_and_write_nothing(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str, jwks_keys: Any
) -> None:
    jwks_url, ec_key, rsa_key = jwks_keys
    api = start_api(jwt_jwks_url=jwks_url, jwt_issuer=ISSUER)
    good = claims(funded_user)
    now = int(time.time())
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()).encode()
    bad = {
        "alg none": unsigned({"alg": "none"}, good),
        "alg NONE with a signature": hmac_token({"alg": "NONE"}, good, JWT_SECRET.encode()),
        "HS256 signed with the RSA public key PEM (kid rsa-1)": hmac_token(
            {"alg": "HS256", "kid": "rsa-1"}, good, pem(rsa_key)
        ),
        "HS256 signed with the EC public key PEM": hmac_token(
            {"alg": "HS256", "kid": "ec-1"}, good, pem(ec_key)
        ),
        "HS256 signed with the RSA JWK": hmac_token({"alg": "HS256", "kid": "rsa-1"}, good, rsa_jwk),
        "RS256 by an attacker's key, jku pointing at the attacker": jwt.encode(
            good, attacker, "RS256", headers={"kid": "rsa-1", "jku": "http://127.0.0.1:9/jwks.json"}
        ),
        "RS256 by an attacker's key with its own embedded jwk": jwt.encode(
            good,
            attacker,
            "RS256",
            headers={
                "kid": "rsa-1",
                "jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key())),
            },
        ),
        "PS256 (not in the list)": jwt.encode(good, rsa_key, "PS256", headers={"kid": "rsa-1"}),
        "ES256 header on the RSA key": jwt.encode(good, ec_key, "ES256", headers={"kid": "rsa-1"}),
        "expired": jwt.encode(claims(funded_user, exp=now - 60), JWT_SECRET, "HS256"),
        "not yet valid (nbf)": jwt.encode(claims(funded_user, nbf=now + 3600), JWT_SECRET, "HS256"),
        "issued in the future (iat)": jwt.encode(claims(funded_user, iat=now + 3600), JWT_SECRET, "HS256"),
        "wrong audience": jwt.encode(claims(funded_user, aud="service_role"), JWT_SECRET, "HS256"),
        "audience list without ours": jwt.encode(claims(funded_user, aud=["anon", "x"]), JWT_SECRET, "HS256"),
        "wrong issuer": jwt.encode(
            claims(funded_user, iss="https://evil.example/auth/v1"), JWT_SECRET, "HS256"
        ),
        "no issuer": jwt.encode(claims(funded_user, iss=None), JWT_SECRET, "HS256"),
        "no sub": jwt.encode(claims(funded_user, sub=None), JWT_SECRET, "HS256"),
        "empty sub": jwt.encode(claims(funded_user, sub=""), JWT_SECRET, "HS256"),
        "sub is an object": jwt.encode(
            claims(funded_user, sub={"id": str(funded_user)}), JWT_SECRET, "HS256"
        ),
        "sub with SQL": jwt.encode(claims(funded_user, sub="' or 1=1 --"), JWT_SECRET, "HS256"),
        "exp as a string": jwt.encode(claims(funded_user, exp="never"), JWT_SECRET, "HS256"),
        "wrong secret": jwt.encode(good, JWT_SECRET + "x", "HS256"),
        "the secret's prefix": jwt.encode(good, JWT_SECRET[:-1], "HS256"),
        "truncated signature": jwt.encode(good, JWT_SECRET, "HS256")[:-4],
        "payload swapped after signing": (
            jwt.encode(good, JWT_SECRET, "HS256").split(".")[0]
            + "."
            + b64(json.dumps(claims(uuid.uuid4())).encode())
            + "."
            + jwt.encode(good, JWT_SECRET, "HS256").split(".")[2]
        ),
        "garbage": "garbage",
        "four parts": "a.b.c.d",
        "header not json": f"{b64(b'not json')}.{b64(b'{}')}.",
        "the service key": SERVICE_KEY,
    }
    before = await total_rows(db_url)
    for name, token in bad.items():
        await expect_401_everywhere(api.url, token, name)
    for header in ("Basic " + b64(b"user:pass"), "Bearer", "Token abc", "Bearer a b", "bearer"):
        await expect_401_everywhere(api.url, header, header, raw=True)
    # For contrast, the right issuer and key pass.
    async with httpx.AsyncClient(base_url=api.url) as http:
        ok = await http.get(
            "/api/me", headers={"Authorization": "Bearer " + jwt.encode(good, JWT_SECRET, "HS256")}
        )
        assert ok.status_code == 200, ok.text
    assert await total_rows(db_url) == before
    await assert_invariants(db_url)


JWT_HEADER = st.fixed_dictionaries(
    {"alg": st.sampled_from(["none", "None", "HS256", "HS384", "RS256", "ES256", "EdDSA", "", "hs256"])},
    optional={
        "typ": st.sampled_from(["JWT", "jwt", "at+jwt", ""]),
        "kid": st.one_of(st.text(max_size=20), st.sampled_from(["ec-1", "rsa-1", "../../etc/passwd"])),
        "crit": st.lists(st.text(max_size=8), max_size=2),
        "jku": st.just("http://127.0.0.1:9/jwks.json"),
        "x5u": st.just("http://127.0.0.1:9/cert.pem"),
        "b64": st.booleans(),
    },
)
CLAIM_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=30), st.lists(st.text(max_size=5), max_size=2)
)


@pytest.mark.slow
def test_random_tokens_and_headers_are_401(start_api: StartApi, funded_user: uuid.UUID, db_url: str) -> None:
    """Hypothesis: random bytes, random JWT headers and claims, signed with the wrong key or
    not at all. None may pass, none may answer anything but a 401."""
    api = start_api()
    before = asyncio.run(total_rows(db_url))
    http = httpx.Client(base_url=api.url, timeout=30)
    forged_key = b"not-the-secret-" + JWT_SECRET.encode()

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        header=JWT_HEADER,
        extra=st.dictionaries(
            st.sampled_from(["sub", "aud", "exp", "nbf", "iat", "role", "iss"]), CLAIM_VALUE
        ),
        kind=st.sampled_from(["forged", "unsigned", "raw", "mangled"]),
        raw=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300),
    )
    def check(header: dict[str, Any], extra: dict[str, Any], kind: str, raw: str) -> None:
        body = {k: v for k, v in (claims(funded_user) | extra).items() if v is not None}
        if kind == "forged":
            token = hmac_token(header, body, forged_key)
        elif kind == "unsigned":
            token = unsigned(header, body)
        elif kind == "mangled":
            good = jwt.encode(claims(funded_user), JWT_SECRET, "HS256")
            cut = len(raw) % len(good)
            token = good[:cut] + raw[:3] + good[cut + 3 :]
            if token == good:
                return
        else:
            token = raw
        response = http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (kind, header, body, token, response.text)
        assert response.json()["status"] == 401

    try:
        check()
    finally:
        http.close()
    assert asyncio.run(total_rows(db_url)) == before
    assert_invariants_sync(db_url)


async def rows_of(db_url: str, user: uuid.UUID) -> list[tuple[Any, ...]]:
    """Every job, ledger and key row of `user`, read as the owner: to prove nothing changed."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        out: list[tuple[Any, ...]] = []
        for query in (
            "select j::text from aijobs.jobs j where user_id = %s order by id",
            "select l::text from aijobs.credit_ledger l where user_id = %s order by id",
            "select k::text from aijobs.api_idempotency_keys k where user_id = %s order by key",
            "select a::text from aijobs.accounts a where user_id = %s",
        ):
            out += await (await conn.execute(query, (user,))).fetchall()
        return out


async def test_a_reaches_none_of_bs_jobs_through_any_endpoint(
    client: httpx.AsyncClient,
    api: Any,
    funded_user: uuid.UUID,
    other_user: uuid.UUID,
    db_url: str,
    settings: Settings,
    store: Store,
) -> None:
    a, b = funded_user, other_user
    theirs: dict[str, str] = {}
    # B's finished jobs are finished by a real worker: "fatal" makes the scripted provider fail.
    for status, text in (("completed", "Lovely staff."), ("failed", "fatal")):
        body = {"type": "sentiment_analysis", "payload": {"text": text}}
        created = await client.post(
            "/api/jobs", json=body, headers=api.auth(b) | {"Idempotency-Key": f"b-{status}"}
        )
        theirs[status] = created.json()["id"]
    async with running_worker(settings, store):

        async def finished() -> bool:
            got = [await job(db_url, uuid.UUID(theirs[s])) for s in ("completed", "failed")]
            return [g["status"] for g in got] == ["completed", "failed"]

        await wait_until(finished, timeout=30, what="B's jobs completed and failed")
    for status in ("pending", "cancelled"):
        created = await client.post(
            "/api/jobs", json=SENTIMENT, headers=api.auth(b) | {"Idempotency-Key": f"b-{status}"}
        )
        theirs[status] = created.json()["id"]
    await client.post(f"/api/jobs/{theirs['cancelled']}/cancel", headers=api.auth(b))
    mine = (await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(a))).json()
    before = await rows_of(db_url, b)

    absent = str(uuid.uuid4())
    as_a = api.auth(a)
    for status, job_id in theirs.items():
        for method, path, headers in (
            ("GET", f"/api/jobs/{job_id}", as_a),
            ("GET", f"/api/jobs/{job_id}?wait=2", as_a),
            ("POST", f"/api/jobs/{job_id}/cancel", as_a),
            ("POST", f"/api/jobs/{job_id}/retry", as_a),
            ("POST", f"/api/jobs/{job_id}/retry", as_a | {"Idempotency-Key": f"b-{status}"}),
            ("GET", f"/api/jobs/{job_id}/events", as_a),
            (
                "GET",
                f"/api/jobs/{job_id}/events",
                as_a | {"Accept": "text/event-stream", "Last-Event-ID": "1"},
            ),
        ):
            started = time.monotonic()
            response = await client.request(method, path, headers=headers)
            twin = await client.request(method, path.replace(job_id, absent), headers=headers)
            assert response.status_code == 404, (status, method, path, response.text)
            assert time.monotonic() - started < 2, "a foreign job must not be waited on"
            strip = lambda p: {k: v for k, v in p.items() if k != "instance"}  # noqa: E731
            assert strip(response.json()) == strip(twin.json()), (status, path)
        # Admin operations are not reachable with a user token at all.
        requeue = await client.post(f"/api/admin/jobs/{job_id}/requeue", headers=as_a)
        assert requeue.status_code == 403
    assert (await client.get("/api/admin/jobs", headers=as_a)).status_code == 403

    # Lists, filters and cursors only ever show A's own rows — even a cursor built from B's job.
    b_job = (await client.get(f"/api/jobs/{theirs['pending']}", headers=api.auth(b))).json()
    forged_cursor = job_cursor(datetime.fromisoformat(b_job["created_at"]), uuid.UUID(b_job["id"]))
    for params in (
        {},
        *({"status": s} for s in ("pending", "processing", "completed", "failed", "cancelled")),
        {"type": "sentiment_analysis"},
        {"cursor": forged_cursor},
        {"limit": 100},
    ):
        listed = await client.get("/api/jobs", params=params, headers=as_a)
        assert listed.status_code == 200
        assert {j["id"] for j in listed.json()["items"]} <= {mine["id"]}, params
        assert {j["user_id"] for j in listed.json()["items"]} <= {str(a)}
    ledger = (await client.get("/api/me/ledger", headers=as_a)).json()["items"]
    assert {e["job_id"] for e in ledger} <= {None, mine["id"]}
    me = (await client.get("/api/me", headers=as_a)).json()
    assert me["user_id"] == str(a)

    assert await rows_of(db_url, b) == before  # nothing of B's changed: no cancel, no retry, no key
    await assert_invariants(db_url)


async def test_catalog_api_role_rls_and_definer_functions(db_url: str) -> None:
    """What makes RLS the enforcement, checked in the catalog rather than trusted."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:

        async def rows(query: str) -> list[tuple[Any, ...]]:
            return await (await conn.execute(query)).fetchall()

        roles = await rows(
            "select rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles"
            " where rolname in ('anon', 'authenticated')"
        )
        assert sorted(roles) == [
            ("anon", False, False, False, False),
            ("authenticated", False, False, False, False),
        ]
        tables = await rows(
            """select c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = 'aijobs' and c.relkind in ('r', 'p')"""
        )
        assert {t[0] for t in tables} >= {
            "accounts",
            "credit_ledger",
            "jobs",
            "job_attempts",
            "job_types",
            "workers",
            "api_idempotency_keys",
        }
        owned_by_api = [t for t in tables if t[1] in ("authenticated", "anon")]
        assert not owned_by_api, owned_by_api
        # Every table holding user data has RLS enabled and forced. The one exemption is the
        # migration bookkeeping, which holds no user data and which the API roles cannot read.
        unforced = sorted(t[0] for t in tables if not (t[2] and t[3]))
        assert unforced in ([], ["schema_migrations"]), (
            f"tables without forced row-level security: {unforced}"
        )
        for name in unforced:
            reachable = await rows(
                f"""select r from unnest(array['anon', 'authenticated']) r
                     where has_table_privilege(r, 'aijobs.{name}', 'SELECT, INSERT, UPDATE, DELETE')"""
            )
            assert not reachable, (name, reachable)
        # Membership would hand the API role the owner's rights (and its all-rows policies).
        owners = {t[1] for t in tables}
        member_of_owner = await rows(
            "select r.rolname, m.rolname from pg_auth_members am join pg_roles r on r.oid = am.member"
            " join pg_roles m on m.oid = am.roleid where r.rolname in ('anon', 'authenticated')"
        )
        assert not [x for x in member_of_owner if x[1] in owners], member_of_owner
        # The API role writes only through functions: not even the idempotency keys, which
        # the API writes as the owner role.
        writable = await rows(
            """select c.relname, p.privilege_type from pg_class c
                 join pg_namespace n on n.oid = c.relnamespace
                 cross join lateral (values ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'))
                      p(privilege_type)
                where n.nspname = 'aijobs' and c.relkind in ('r', 'p')
                  and has_table_privilege('authenticated', c.oid, p.privilege_type)"""
        )
        assert writable == [], writable
        assert not await rows(
            """select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = 'aijobs' and c.relkind in ('r', 'p')
                  and has_table_privilege('anon', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')"""
        )
        unpinned = await rows(
            """select n.nspname || '.' || p.proname
                 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where p.prosecdef and n.nspname in ('aijobs', 'auth')
                  and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) c
                                   where c like 'search_path=%')"""
        )
        assert not unpinned, f"SECURITY DEFINER functions without a pinned search_path: {unpinned}"
        definers = await rows(
            """select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where p.prosecdef and n.nspname = 'aijobs'"""
        )
        assert definers[0][0] >= 3  # the checks above looked at something
        # Nobody may run a SECURITY DEFINER function they were not granted (no PUBLIC execute).
        public_exec = await rows(
            """select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where p.prosecdef and n.nspname = 'aijobs'
                  and has_function_privilege('anon', p.oid, 'EXECUTE')"""
        )
        assert not public_exec, f"SECURITY DEFINER functions anon may execute: {public_exec}"
        # aijobs.create_jobs_grouped takes the user ids as an argument: whoever may run it may
        # act for anyone, so only the owner may. Granting credits is not the users' either.
        for signature, callers in (
            (
                "aijobs.create_jobs_grouped(uuid[], text[], jsonb[], smallint[], timestamptz[],"
                " integer[], uuid[], uuid[])",
                "'anon', 'authenticated', 'service_role'",
            ),
            ("aijobs.grant_credits(uuid, bigint, text, text)", "'anon', 'authenticated'"),
        ):
            impersonators = await rows(
                f"""select r from unnest(array[{callers}]) r
                     where has_function_privilege(r, '{signature}', 'EXECUTE')"""
            )
            assert not impersonators, (signature, impersonators)
        victim = uuid.uuid4()
        await conn.execute("select aijobs.grant_credits(%s, 5, 'test')", (victim,))
        await assert_no_impersonation(conn, victim)
        balance = await rows(f"select balance from aijobs.accounts where user_id = '{victim}'")
        assert balance == [(5,)]


async def assert_no_impersonation(conn: psycopg.AsyncConnection[Any], victim: uuid.UUID) -> None:
    """As `anon` and as `authenticated` (signed in as someone else, or not at all), no way in
    creates a job for `victim` or grants them credits: `anon` may not run the creation
    function, `authenticated` may run it only for its own JWT subject (AJ004), and neither may
    run the grouped creation or the grant."""
    job = "array['sentiment_analysis'], array['{\"text\": \"x\"}'::jsonb]"
    statements = {
        "create": (f"select * from aijobs.create_jobs(%s, {job})", (victim,)),
        "create with the quota off": (
            f"select * from aijobs.create_jobs(%s, {job}, null, null, null, null, null, false)",
            (victim,),
        ),
        "grouped": (
            "select * from aijobs.create_jobs_grouped(array[%s]::uuid[], array['sentiment_analysis'],"
            ' array[\'{"text": "x"}\'::jsonb], array[0::smallint], null, array[4], null)',
            (victim,),
        ),
        "grant": ("select aijobs.grant_credits(%s, 1000, 'stolen')", (victim,)),
    }
    attacker = json.dumps({"sub": str(uuid.uuid4()), "role": "authenticated"})
    for role, claims_ in (("anon", "{}"), ("authenticated", "{}"), ("authenticated", attacker)):
        for name, (statement, params) in statements.items():
            async with conn.transaction(force_rollback=True):
                await conn.execute(
                    "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                    (role, claims_),
                )
                with pytest.raises(psycopg.Error) as refused:
                    await conn.execute(statement, params)
            expected = "AJ004" if role == "authenticated" and name.startswith("create") else "42501"
            assert refused.value.sqlstate == expected, (role, claims_, name, refused.value)


# What a role may do with each of aijobs' objects, as PostgreSQL decides it (direct
# grants, PUBLIC and membership included), so two databases compare by meaning, not ACL text.
PRIVILEGES_BY_ROLE = """
select r, 'table ' || c.relname,
       array(select p from unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                        'REFERENCES', 'TRIGGER']) p
              where has_table_privilege(r, c.oid, p))
  from pg_class c join pg_namespace n on n.oid = c.relnamespace,
       unnest(array['anon', 'authenticated', 'service_role']) r
 where n.nspname = 'aijobs' and c.relkind in ('r', 'p', 'v', 'm')
union all
select r, 'sequence ' || c.relname,
       array(select p from unnest(array['USAGE', 'SELECT', 'UPDATE']) p
              where has_sequence_privilege(r, c.oid, p))
  from pg_class c join pg_namespace n on n.oid = c.relnamespace,
       unnest(array['anon', 'authenticated', 'service_role']) r
 where n.nspname = 'aijobs' and c.relkind = 'S'
union all
select r, 'function ' || p.oid::regprocedure::text,
       array(select 'EXECUTE' where has_function_privilege(r, p.oid, 'EXECUTE'))
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace,
       unnest(array['anon', 'authenticated', 'service_role']) r
 where n.nspname = 'aijobs'
union all
select r, 'schema ' || n.nspname,
       array(select p from unnest(array['USAGE', 'CREATE']) p where has_schema_privilege(r, n.oid, p))
  from pg_namespace n, unnest(array['anon', 'authenticated', 'service_role']) r
 where n.nspname = 'aijobs'
order by 1, 2
"""


def test_supabase_default_privileges_grant_nothing_more(admin_url: str, db_url: str) -> None:
    """Supabase's projects grant every new table, function and sequence to anon,
    authenticated and service_role by default privileges, directly and not through PUBLIC,
    so a migration's `REVOKE ... FROM PUBLIC` alone leaves them their rights. Migrated under
    those defaults (Supabase's, in public, and the same for every schema, which reaches
    schema aijobs), every object must end with exactly the rights it has without them: no
    EXECUTE on aijobs.create_jobs for anon or on the grouped creation for anyone, no TRUNCATE
    on the ledger, nothing on the migration bookkeeping. A new migration that creates objects
    fails here until it revokes from those roles as the baseline does."""
    name = f"aj_supa_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = with_dbname(admin_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for kind in ("tables", "functions", "sequences"):
                for scope in ("in schema public", ""):
                    conn.execute(
                        f"alter default privileges {scope} grant all on {kind}"
                        " to anon, authenticated, service_role"
                    )
        migrate(url, job_types=job_type_rows())
        with psycopg.connect(url) as supa, psycopg.connect(db_url) as plain:
            under_defaults = [(r, o, tuple(p)) for r, o, p in supa.execute(PRIVILEGES_BY_ROLE)]
            without = [(r, o, tuple(p)) for r, o, p in plain.execute(PRIVILEGES_BY_ROLE)]
            assert len(without) > 60  # every aijobs object, three roles each
            extra = sorted(set(under_defaults) - set(without))
            assert under_defaults == without, f"rights the default privileges added: {extra}"
            victim = uuid.uuid4()
            supa.execute("select aijobs.grant_credits(%s, 5, 'test')", (victim,))
            for role in ("anon", "authenticated"):
                with supa.transaction(force_rollback=True):
                    supa.execute(f"set local role {role}")
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        supa.execute("truncate aijobs.credit_ledger, aijobs.jobs cascade")
            balance = supa.execute(
                "select balance from aijobs.accounts where user_id = %s", (victim,)
            ).fetchone()
            assert balance == (5,)
        asyncio.run(impersonation_refused(url, victim))
        with psycopg.connect(url) as supa:
            balance = supa.execute(
                "select balance from aijobs.accounts where user_id = %s", (victim,)
            ).fetchone()
        assert balance == (5,)
    finally:
        drop_database(admin_url, url)


async def impersonation_refused(url: str, victim: uuid.UUID) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await assert_no_impersonation(conn, victim)


KNOWN_CHANNELS = {"aijobs_jobs", "aijobs_cancel", "aijobs_job_events"}


async def test_notify_carries_no_user_text(
    client: httpx.AsyncClient,
    api: Any,
    funded_user: uuid.UUID,
    db_url: str,
    settings: Settings,
    store: Store,
) -> None:
    """NOTIFY payloads reach every listener of the database, whoever they are: they must say
    which job and which status, never what the job is about."""
    canary = f"canary-{uuid.uuid4().hex}"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # Every channel any function notifies on, so a channel added later is listened to too.
        sources = await (
            await conn.execute("select prosrc from pg_proc where prosrc like '%pg_notify%'")
        ).fetchall()
        found = {m for (src,) in sources for m in re.findall(r"pg_notify\(\s*'([^']+)'", src)}
        assert found, "no pg_notify call found in any function"
        channels = KNOWN_CHANNELS | found

    seen: list[tuple[str, str]] = []
    listening = asyncio.Event()

    async def listen() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            for channel in sorted(channels):
                await conn.execute(f'listen "{channel}"')
            listening.set()
            async for note in conn.notifies():
                seen.append((note.channel, note.payload))

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(listening.wait(), 10)
        headers = api.auth(funded_user)
        bodies = [
            {"type": "sentiment_analysis", "payload": {"text": f"{canary} lovely"}},
            {"type": "review_processing", "payload": {"review_text": canary, "business_name": canary}},
            {"type": "prompt_analysis", "payload": {"prompt": canary, "goal": canary}},
        ]
        done = [
            (
                await client.post("/api/jobs", json=b, headers=headers | {"Idempotency-Key": f"{canary}-{i}"})
            ).json()
            for i, b in enumerate(bodies)
        ]
        pending = (await client.post("/api/jobs", json=bodies[0], headers=headers)).json()
        cancelled = await client.post(f"/api/jobs/{pending['id']}/cancel", headers=headers)
        assert cancelled.json()["status"] == "cancelled"
        retried = (await client.post(f"/api/jobs/{pending['id']}/retry", headers=headers)).json()
        slow = (
            await client.post(
                "/api/jobs",
                json={"type": "sentiment_analysis", "payload": {"text": "sleep:5"}},
                headers=headers,
            )
        ).json()
        async with running_worker(settings, store):

            async def status_of(job_id: str) -> str:
                return str((await job(db_url, uuid.UUID(job_id)))["status"])

            async def slow_running() -> bool:
                return await status_of(slow["id"]) == "processing"

            await wait_until(slow_running, timeout=20, what="the slow job running")
            await client.post(f"/api/jobs/{slow['id']}/cancel", headers=headers)  # NOTIFY aijobs_cancel

            async def all_finished() -> bool:
                ids = [j["id"] for j in done] + [retried["id"], slow["id"]]
                return all([await status_of(i) in ("completed", "cancelled") for i in ids])

            await wait_until(all_finished, timeout=30, what="every job finished")

        async def heard_everything() -> bool:
            return {c for c, _ in seen} >= KNOWN_CHANNELS and any(
                p == f"{slow['id']} cancelled" for c, p in seen if c == "aijobs_job_events"
            )

        await wait_until(heard_everything, timeout=10, what="notifications on every channel")
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    leaked = [(c, p) for c, p in seen if canary in p or canary[:12] in p]
    assert not leaked, leaked
    # And what they do carry is only ids, statuses and type names.
    for channel, payload in seen:
        assert len(payload) <= 64, (channel, payload)
    await assert_invariants(db_url)
