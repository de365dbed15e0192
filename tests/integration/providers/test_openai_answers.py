"""What the OpenAI provider makes of odd answers, over real HTTP against the fake server.

An answer the queue cannot store, or one it must not retry, is classified here, before any
worker sees it: these tests call the provider directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aijobs.jobs.ai_generation import AIGenerationPayload
from aijobs.jobs.ai_generation import build_task as reply_task
from aijobs.jobs.sentiment_analysis import SentimentPayload
from aijobs.jobs.sentiment_analysis import build_task as sentiment_task
from aijobs.providers.base import (
    FatalProviderError,
    LLMTask,
    RateLimitedError,
    RetryableProviderError,
)
from aijobs.providers.fake_openai import FakeOpenAI, Step
from aijobs.providers.openai import Api, OpenAIProvider
from aijobs.providers.openai_errors import DEFAULT_RATE_LIMIT_WAIT
from aijobs.providers.retry_after import MAX_WAIT_SECONDS
from tests.support.fake_openai_fixtures import TEST_KEY

APIS: list[Api] = ["responses", "chat"]


@pytest.fixture(params=APIS)
async def provider(request: pytest.FixtureRequest, fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(
        api_key=TEST_KEY, model="gpt-5-nano", base_url=fake_openai.base_url, api=request.param
    )
    yield provider
    await provider.aclose()


def reply() -> LLMTask[Any]:
    return reply_task(AIGenerationPayload(review_text="Lovely pasta, slow service."))


def sentiment() -> LLMTask[Any]:
    return sentiment_task(SentimentPayload(text="Lovely pasta, slow service."))


def storable(text: str) -> bool:
    """What PostgreSQL accepts in a text column: UTF-8 without NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


@pytest.mark.parametrize(
    ("task", "answer", "code_point"),
    [
        (reply, "Thank you\x00 for the review", "U+0000"),
        (reply, "Thank you \ud800 for the review", "U+D800"),
        (sentiment, '{"label":"positive","score":0.5,"reasons":["tasty \\u0000 food"]}', "U+0000"),
        (sentiment, '{"label":"positive","score":0.5,"reasons":["ok","tasty \\u0000"]}', "U+0000"),
    ],
    ids=["text-nul", "text-lone-surrogate", "structured-nul", "structured-nul-second-item"],
)
async def test_an_answer_postgres_cannot_store_is_a_bad_answer(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, task: Any, answer: str, code_point: str
) -> None:
    fake_openai.script(Step.ok(text=answer))
    with pytest.raises(RetryableProviderError) as refused:
        await provider.run(task())
    message = str(refused.value)
    assert code_point in message and "cannot store" in message
    assert storable(message)
    assert refused.value.usage is not None and refused.value.usage.request_id  # the call is billed


async def test_a_structured_lone_surrogate_is_a_bad_answer(
    provider: OpenAIProvider, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.ok(text='{"label":"positive","score":0.5,"reasons":["x \\ud800 y"]}'))
    with pytest.raises(RetryableProviderError) as refused:
        await provider.run(sentiment())
    assert storable(str(refused.value))


async def test_a_refusal_with_nul_fails_with_a_storable_message(
    provider: OpenAIProvider, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.refused("I can't\x00 help with \ud800 that."))
    with pytest.raises(FatalProviderError) as refused:
        await provider.run(sentiment())
    message = str(refused.value)
    assert storable(message) and "I can't\ufffd help with \ufffd that." in message


async def test_ordinary_unicode_is_kept(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Step.ok(text="Grazie mille 🍝 — à bientôt\ttab"))
    completion = await provider.run(reply())
    assert completion.output.reply == "Grazie mille 🍝 — à bientôt\ttab"


async def test_a_content_filter_is_fatal_on_both_apis(
    provider: OpenAIProvider, fake_openai: FakeOpenAI
) -> None:
    """Responses says `incomplete` (reason content_filter), Chat `finish_reason: content_filter`:
    the same input meets the same filter, so neither is retried (docs/providers.md)."""
    fake_openai.script(Step.filtered())
    with pytest.raises(FatalProviderError, match="content filter"):
        await provider.run(sentiment())


async def test_a_token_cap_is_still_retried(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Step.truncated())
    with pytest.raises(RetryableProviderError, match="incomplete"):
        await provider.run(sentiment())


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after-ms": "NaN"}, DEFAULT_RATE_LIMIT_WAIT),
        ({"retry-after": "inf"}, DEFAULT_RATE_LIMIT_WAIT),
        ({"retry-after-ms": "-1000"}, DEFAULT_RATE_LIMIT_WAIT),
        ({"retry-after": "10000000000000"}, MAX_WAIT_SECONDS),
        ({"retry-after-ms": "NaN", "retry-after": "2"}, 2.0),
    ],
    ids=["nan", "inf", "negative", "enormous", "nan-then-seconds"],
)
async def test_a_429_asking_for_a_senseless_wait(
    provider: OpenAIProvider, fake_openai: FakeOpenAI, headers: dict[str, str], wait: float
) -> None:
    """A NaN wait made a hold that never ended (and a job retried at once, forever), an
    enormous one an interval PostgreSQL cannot add to now(): neither reaches the queue."""
    fake_openai.script(Step(status=429, headers=headers))
    with pytest.raises(RateLimitedError) as limited:
        await provider.run(sentiment())
    assert limited.value.retry_after == wait
