"""Each job type end to end through a worker, the real SDK over real HTTP to the fake server."""

from __future__ import annotations

import uuid
from decimal import Decimal
from importlib import import_module

import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.jobs import JOB_TYPE_NAMES, get_job_type
from aijobs.providers.fake_openai import FakeOpenAI
from tests.integration.providers.helpers import attempts, create, openai_workers, wait_for_status
from tests.support.fake_openai_fixtures import TEST_KEY, answered, openai_settings_for
from tests.support.workers import job


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_every_job_type_end_to_end(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI, api: str
) -> None:
    cfg = openai_settings_for(settings, fake_openai, llm_api=api, openai_max_output_tokens=900)
    ids = {name: await create(store, funded_user, name) for name in JOB_TYPE_NAMES}
    async with openai_workers(cfg, store):
        await wait_for_status(db_url, list(ids.values()), "completed")

    requests = answered(fake_openai)
    assert len(requests) == len(ids)
    path = "/v1/responses" if api == "responses" else "/v1/chat/completions"
    assert {r.path for r in requests} == {path}
    for r in requests:
        assert r.headers["authorization"] == f"Bearer {TEST_KEY}"
        assert r.body["model"] == "gpt-5-nano"
        assert "temperature" not in r.body and "top_p" not in r.body

    for name, job_id in ids.items():
        kind = get_job_type(name)
        module = import_module(f"aijobs.jobs.{name}")
        task = module.build_task(kind.parse(kind.example))
        body = _request_for(requests, task.input, api)
        if api == "responses":
            # Our instructions apart; the user's data only as the user message.
            assert body["instructions"] == task.instructions
            assert body["input"] == [{"role": "user", "content": task.input}]
            assert body["max_output_tokens"] == 900
            assert body["reasoning"] == {"effort": "minimal"}
            assert body["store"] is False
            fmt = (body.get("text") or {}).get("format")
        else:
            assert body["messages"] == [
                {"role": "system", "content": task.instructions},
                {"role": "user", "content": task.input},
            ]
            assert body["max_completion_tokens"] == 900
            assert "max_tokens" not in body
            fmt = body.get("response_format")
        if task.text_field is None:
            assert fmt is not None and fmt["type"] == "json_schema"
            schema = fmt["schema"] if api == "responses" else fmt["json_schema"]["schema"]
            strict = fmt["strict"] if api == "responses" else fmt["json_schema"]["strict"]
            assert strict is True
            assert set(schema["properties"]) == set(task.output.model_fields)
            assert schema["additionalProperties"] is False
        else:
            assert fmt is None  # plain text for ai_generation

        row = await job(db_url, job_id)
        assert row["attempts"] == 1 and row["error"] is None
        result = row["result"]
        assert result["provider"] == "openai"
        assert result["model"] == "gpt-5-nano-2025-08-07"
        task.output.model_validate(result["output"])  # the stored answer fits its model
        (attempt,) = await attempts(db_url, job_id)
        assert attempt["outcome"] == "completed"
        assert attempt["provider"] == "openai"
        assert attempt["model"] == "gpt-5-nano-2025-08-07"
        assert attempt["request_id"].startswith("req_")
        assert attempt["latency_ms"] > 0
        assert attempt["input_tokens"] > 0 and attempt["output_tokens"] > 0
        assert attempt["reasoning_tokens"] == 64
        # gpt-5-nano: $0.05 in, $0.40 out per 1M tokens.
        expected = (
            Decimal(attempt["input_tokens"]) * Decimal("0.05")
            + Decimal(attempt["output_tokens"]) * Decimal("0.40")
        ) / 1_000_000
        assert attempt["cost_usd"] == expected.quantize(Decimal("0.00000001"))


def _request_for(requests: list, user_input: str, api: str) -> dict:  # type: ignore[type-arg]
    for r in requests:
        if api == "responses" and r.body["input"][0]["content"] == user_input:
            return r.body
        if api == "chat" and r.body["messages"][1]["content"] == user_input:
            return r.body
    raise AssertionError(f"no request carried {user_input[:40]!r}")


async def test_configured_prices_override_the_table(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    cfg = openai_settings_for(settings, fake_openai, openai_prices="gpt-5-nano=1000000:0")
    job_id = await create(store, funded_user, "sentiment_analysis")
    async with openai_workers(cfg, store):
        await wait_for_status(db_url, [job_id], "completed")
    (attempt,) = await attempts(db_url, job_id)
    assert attempt["cost_usd"] == Decimal(attempt["input_tokens"])  # $1 per input token, output free


async def test_usage_aggregates_per_job_and_per_user(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    from aijobs.providers.fake_openai import Step

    fake_openai.script(Step.error(500))
    first = await create(store, funded_user, "sentiment_analysis")
    second = await create(store, funded_user, "review_processing")
    async with openai_workers(openai_settings_for(settings, fake_openai), store):
        await wait_for_status(db_url, [first, second], "completed")
    async with store.session() as s:
        per_job = await s.providers.usage_for_job(first)
        per_user = await s.providers.usage_by_user(user_id=funded_user)
    rows = await attempts(db_url, first) + await attempts(db_url, second)
    assert per_job is not None and per_job["calls"] == len(await attempts(db_url, first))
    # The failed call is filed under the model asked for; answers under the snapshot that replied.
    assert {r["model"] for r in per_user} == {"gpt-5-nano", "gpt-5-nano-2025-08-07"}
    assert sum(r["calls"] for r in per_user) == len(rows) == 3
    assert sum(r["input_tokens"] for r in per_user) == sum(a["input_tokens"] or 0 for a in rows)
    costs = [a["cost_usd"] for a in rows if a["cost_usd"] is not None]
    assert sum(r["cost_usd"] or 0 for r in per_user) == sum(costs) > 0
