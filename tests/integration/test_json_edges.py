"""JSON the fast encoder would refuse or the fast decoder would misread still round-trips.

The store writes JSON with orjson and falls back to the standard library for what orjson
refuses; it reads with the standard library. A payload written straight through SQL (as a
Supabase client may) can hold numbers no API request would carry, up to the 32 characters the
payload's domain admits; a claimed batch holding one must stay readable, or the whole batch
would be lost to a decode error. Longer ones (1e400) the domain refuses, whoever writes them.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from aijobs.db.rows import Finish
from aijobs.db.store import Store
from tests.support.jobs import create_job
from tests.support.workers import fetch_one

HUGE = 123456789012345678901234567890  # past 64 bits: orjson reads it as a float
N32 = 10**32 - 1  # 32 digits: the longest number a payload may hold


async def test_claimed_batch_with_extreme_numbers_stays_readable(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        plain = await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "ok"})
        odd = await create_job(
            s, user_id=funded_user, type="sentiment_analysis", payload={"text": "ok", "n": HUGE, "big": 1.5}
        )
        # The longest number the schema admits (32 digits, past 64 bits), the way a direct SQL
        # caller would write it.
        await s.conn.execute(
            "update aijobs.jobs set payload = payload || jsonb_build_object('n32', %s::numeric)"
            " where id = %s",
            (str(N32), odd.id),
        )
        # 1e400 (past any double: orjson refuses it) is not stored at all, even by the owner.
        with pytest.raises(psycopg.errors.CheckViolation):
            await s.conn.execute(
                "update aijobs.jobs set payload = payload || '{\"e400\": 1e400}'::jsonb where id = %s",
                (odd.id,),
            )
        claimed = {job.id: job for job in await s.jobs.claim("w-json", 10, lease_seconds=30)}
    assert set(claimed) == {plain.id, odd.id}
    payload = claimed[odd.id].payload
    assert payload["n"] == HUGE and isinstance(payload["n"], int)
    assert payload["n32"] == N32 and isinstance(payload["n32"], int)
    assert "e400" not in payload


async def test_results_orjson_refuses_are_written_with_the_standard_encoder(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        created = await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "ok"})
        [job] = await s.jobs.claim("w-json", 1, lease_seconds=30)
        result = {"count": HUGE, "by_rank": {1: "first"}}  # a >64-bit int and a non-string key
        won = await s.jobs.finish(
            [
                Finish(
                    id=job.id,
                    lease_token=job.lease_token,
                    status="completed",
                    outcome="completed",
                    result=result,
                )
            ],
            "w-json",
        )
    assert won == {(created.id, job.lease_token): "completed"}
    row = await fetch_one(db_url, "select result from aijobs.jobs where id = %s", created.id)
    assert row["result"] == {"count": HUGE, "by_rank": {"1": "first"}}


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        ('{"a": 12345678901234567890123456789012}', False),
        ('{"a": 123456789012345678901234567890123}', True),
        ('{"a": -1234567890123456789012345678901}', False),
        ('{"a": -12345678901234567890123456789012}', True),
        ('{"a": [1, 2, {"b": 1.234567890123456789012345678901}]}', False),
        ('{"a": [1, 2, {"b": 1.2345678901234567890123456789012}]}', True),
        ('{"a": [12345678901234567890, 12345678901234567890]}', False),
        ('{"a": "123456789012345678901234567890123456789"}', False),
        ('{"123456789012345678901234567890123456789": true}', False),
        ('{"a": 1e40}', True),
    ],
)
def test_the_number_rule_counts_each_numbers_own_characters(db_url: str, payload: str, refused: bool) -> None:
    """More than 32 characters in one number (sign and point included) is refused; numbers side
    by side, and digits in strings or keys, are not numbers that long."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("select aijobs.json_problem(%s::jsonb)", (payload,)).fetchone()
    assert row is not None
    assert (row[0] == "holds a number longer than 32 characters") is refused, row
