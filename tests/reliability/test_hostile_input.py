"""Scenario 10 (input half): SQL-injection-shaped and oversized input over real HTTP.

Every value goes to PostgreSQL as a bound parameter, so injection-shaped text must come back
verbatim as data and the schema must be untouched afterwards. Input the API cannot store
(NUL, lone surrogates, non-finite numbers, absurd nesting, dates PostgreSQL cannot hold, a
body over MAX_BODY_BYTES) must be refused with 413 or 422 — never a 5xx, never half-written.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.invariants import assert_invariants
from tests.support.snapshots import snapshot, total_rows

INJECTIONS = [
    "'; drop table aijobs.jobs; --",
    '"; drop table aijobs.credit_ledger; --',
    "' or '1'='1",
    "1; update aijobs.accounts set balance = 1000000; --",
    "$$; select pg_sleep(30); $$",
    "'); select set_config('role', 'postgres', false); --",
    "\\'; copy jobs to '/tmp/x'; --",
    "%s %(user)s {0} ${jndi:ldap://127.0.0.1/x}",
    "<script>alert(1)</script>",
    "ROBERT'); DROP TABLE Students;--",
    "\u202e\u200b\ufeff zero-width and bidi",
    "emoji 🚀 and astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


async def schema_fingerprint(db_url: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            """select c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = 'aijobs' order by 1"""
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "select rolname, rolsuper, rolbypassrls from pg_roles where rolname in"
            " ('anon', 'authenticated', 'service_role') order by 1"
        )
        return rows + await cur.fetchall()


async def test_injection_shaped_text_is_stored_verbatim(client, api, funded_user, db_url) -> None:
    before = await schema_fingerprint(db_url)
    headers = api.auth(funded_user)
    for i, text in enumerate(INJECTIONS):
        body = {
            "type": "ai_generation",
            "payload": {"review_text": text, "business_name": text[:200], "tone": "neutral"},
        }
        key = f"k-{i}-" + text.encode("ascii", "ignore").decode()[:200]
        key = "".join(ch for ch in key if " " <= ch <= "~").strip()
        created = await client.post("/api/jobs", json=body, headers=headers | {"Idempotency-Key": key})
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["payload"]["review_text"] == text and job["idempotency_key"] == key
        again = await client.get(f"/api/jobs/{job['id']}", headers=headers)
        assert again.json()["payload"]["review_text"] == text
        replay = await client.post("/api/jobs", json=body, headers=headers | {"Idempotency-Key": key})
        assert replay.status_code == 201 and replay.json()["id"] == job["id"]
    # Injection-shaped query and path values are validated, not executed.
    for path in (
        "/api/jobs?type=sentiment_analysis'%20or%201=1--",
        "/api/jobs?status=pending'%3Bdrop%20table%20jobs--",
        "/api/jobs?cursor=%27%3B%20drop%20table%20jobs%3B--",
        "/api/jobs/1'%20or%20'1'='1",
        "/api/jobs/00000000-0000-0000-0000-000000000000'--/cancel",
        "/api/me/ledger?cursor=bHwxIG9yIDE9MQ",  # "l|1 or 1=1"
    ):
        response = await client.get(path, headers=headers)
        if "/cancel" in path:
            response = await client.post(path, headers=headers)
        assert response.status_code in (404, 422), (path, response.status_code, response.text)
    listed = await client.get("/api/jobs", params={"limit": 100}, headers=headers)
    assert {j["payload"]["review_text"] for j in listed.json()["items"]} == set(INJECTIONS)
    assert await schema_fingerprint(db_url) == before
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance) == (len(INJECTIONS), 1000 - 2 * len(INJECTIONS))
    await assert_invariants(db_url)


def deeply_nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_BODIES: dict[str, bytes] = {
    "NUL in text": json.dumps({"type": "sentiment_analysis", "payload": {"text": "a\u0000b"}}).encode(),
    "lone surrogate": b'{"type": "sentiment_analysis", "payload": {"text": "a\\ud800b"}}',
    "lone surrogate in a key": b'{"type": "sentiment_analysis", "payload": {"text": "x", "\\udfff": 1}}',
    "invalid utf-8": b'{"type": "sentiment_analysis", "payload": {"text": "\xff\xfe"}}',
    "NaN": b'{"type": "sentiment_analysis", "payload": {"text": NaN}}',
    "Infinity priority": b'{"type": "sentiment_analysis", "payload": {"text": "x"}, "priority": Infinity}',
    "1e400 priority": b'{"type": "sentiment_analysis", "payload": {"text": "x"}, "priority": 1e400}',
    "huge int priority": b'{"type": "sentiment_analysis", "payload": {"text": "x"}, "priority": '
    + b"9" * 5000
    + b"}",
    "huge max_attempts": b'{"type": "sentiment_analysis", "payload": {"text": "x"}, "max_attempts": '
    + b"9" * 40
    + b"}",
    "deep nesting in payload": (
        b'{"type": "sentiment_analysis", "payload": {"text": "x", "extra": '
        + deeply_nested(20_000).encode()
        + b"}}"
    ),
    "deep nesting as the body": deeply_nested(30_000).encode(),
    "payload is a list": b'{"type": "sentiment_analysis", "payload": ["text"]}',
    "payload is a string": b'{"type": "sentiment_analysis", "payload": "text"}',
    "body is null": b"null",
    "body is a number": b"42",
    "empty body": b"",
    "not json": b"type=sentiment_analysis",
    "duplicate keys": b'{"type": "sentiment_analysis", "type": "nope", "payload": {"text": "x"}}',
    "unknown type": json.dumps({"type": "drop_table_jobs", "payload": {}}).encode(),
    "type with injection": json.dumps({"type": "x'; drop table aijobs.jobs; --", "payload": {}}).encode(),
    "run_at year 1 east of UTC": json.dumps(
        {"type": "sentiment_analysis", "payload": {"text": "x"}, "run_at": "0001-01-01T00:00:00+14:00"}
    ).encode(),
    "run_at year 9999 west of UTC": json.dumps(
        {"type": "sentiment_analysis", "payload": {"text": "x"}, "run_at": "9999-12-31T23:59:59-14:00"}
    ).encode(),
    "run_at without offset": json.dumps(
        {"type": "sentiment_analysis", "payload": {"text": "x"}, "run_at": "2030-01-01T00:00:00"}
    ).encode(),
    "text over the type's limit": json.dumps(
        {"type": "sentiment_analysis", "payload": {"text": "x" * 10_001}}
    ).encode(),
    "many fields": json.dumps(
        {"type": "sentiment_analysis", "payload": {"text": "x", **{f"f{i}": i for i in range(5000)}}}
    ).encode(),
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
async def test_hostile_bodies_are_refused_cleanly(client, api, funded_user, db_url, name) -> None:
    before = await total_rows(db_url)
    response = await client.post(
        "/api/jobs",
        content=HOSTILE_BODIES[name],
        headers=api.auth(funded_user) | {"Content-Type": "application/json"},
    )
    assert response.status_code in (413, 422), (name, response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert await total_rows(db_url) == before
    await assert_invariants(db_url)


async def test_oversized_bodies_are_413_before_parsing(client, api, funded_user, db_url) -> None:
    headers = api.auth(funded_user) | {"Content-Type": "application/json"}
    big_text = "x" * (70 * 1024)
    body = json.dumps({"type": "sentiment_analysis", "payload": {"text": big_text}}).encode()
    declared = await client.post("/api/jobs", content=body, headers=headers)
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    async def chunks():  # no Content-Length: read up to the limit, then refused
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    chunked = await client.post("/api/jobs", content=chunks(), headers=headers)
    assert chunked.status_code == 413
    # A lying Content-Length (small) with a big body must not slip past the limit either.
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        lying = await http.post("/api/jobs/" + str(uuid.uuid4()) + "/cancel", content=body, headers=headers)
    assert lying.status_code in (404, 413), lying.text
    # Oversized headers: an enormous Idempotency-Key and Authorization.
    huge_key = await client.post(
        "/api/jobs",
        json={"type": "sentiment_analysis", "payload": {"text": "x"}},
        headers=api.auth(funded_user) | {"Idempotency-Key": "k" * 256},
    )
    assert huge_key.status_code == 422
    huge_token = await client.get("/api/me", headers={"Authorization": "Bearer " + "a" * 60_000})
    assert huge_token.status_code in (400, 401, 431), huge_token.status_code
    assert await total_rows(db_url) == (0, 1, 0)
    await assert_invariants(db_url)
