"""JSON the fast encoder would refuse or the fast decoder would misread still round-trips.

The store writes JSON with orjson and falls back to the standard library for what orjson
refuses; it reads with the standard library. A payload written straight through the SQL
function (as a Supabase client may) can hold numbers no API request would carry; a claimed
batch holding one must stay readable, or the whole batch would be lost to a decode error.
"""

from __future__ import annotations

import uuid

from aijobs.db.rows import Finish
from aijobs.db.store import Store
from tests.support.workers import fetch_one

HUGE = 123456789012345678901234567890  # past 64 bits: orjson reads it as a float


async def test_claimed_batch_with_extreme_numbers_stays_readable(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        plain = await s.create_job(user_id=funded_user, type="sentiment_analysis", payload={"text": "ok"})
        odd = await s.create_job(
            user_id=funded_user, type="sentiment_analysis", payload={"text": "ok", "n": HUGE, "big": 1.5}
        )
        # 1e400 (past any double: orjson refuses it), the way a direct SQL caller would write it.
        await s.conn.execute(
            "update jobs set payload = payload || '{\"e400\": 1e400}'::jsonb where id = %s", (odd.id,)
        )
        claimed = {job.id: job for job in await s.claim("w-json", 10, lease_seconds=30)}
    assert set(claimed) == {plain.id, odd.id}
    payload = claimed[odd.id].payload
    assert payload["n"] == HUGE and isinstance(payload["n"], int)
    assert payload["e400"] == 10**400


async def test_results_orjson_refuses_are_written_with_the_standard_encoder(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        created = await s.create_job(user_id=funded_user, type="sentiment_analysis", payload={"text": "ok"})
        [job] = await s.claim("w-json", 1, lease_seconds=30)
        result = {"count": HUGE, "by_rank": {1: "first"}}  # a >64-bit int and a non-string key
        won = await s.finish(
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
    row = await fetch_one(db_url, "select result from jobs where id = %s", created.id)
    assert row["result"] == {"count": HUGE, "by_rank": {"1": "first"}}
