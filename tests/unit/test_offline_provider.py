"""The offline provider: honest, deterministic rules behind the Provider protocol."""

from __future__ import annotations

import asyncio
import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aijobs.jobs import ai_generation, get_job_type, prompt_analysis, review_processing, sentiment_analysis
from aijobs.jobs.base import JobContext
from aijobs.providers.base import FatalProviderError, LLMTask, Provider
from aijobs.providers.offline import OfflineProvider

PROVIDER = OfflineProvider()


def ctx() -> JobContext:
    return JobContext(
        job_id=uuid.uuid4(), attempt=1, provider=PROVIDER, log=logging.getLogger("test.offline")
    )


async def run(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    jt = get_job_type(name)
    result = await jt.handler(jt.parse(payload), ctx())
    output = result.result["output"]
    assert isinstance(output, dict)
    return output


def test_satisfies_provider_protocol() -> None:
    provider: Provider = PROVIDER
    assert provider.name == "offline"
    assert provider.model == "rules-v1"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Absolutely wonderful! The staff were amazing and the food was delicious.", "positive"),
        ("Horrible experience. The food was disgusting and the waiter was rude.", "negative"),
        ("The store opens at 9 am on weekdays.", "neutral"),
        ("The food was great but the service was awful.", "mixed"),
    ],
)
async def test_sentiment_labels(text: str, label: str) -> None:
    out = await run("sentiment_analysis", {"text": text})
    assert out["label"] == label
    assert -1 <= out["score"] <= 1
    assert out["reasons"]
    if label == "positive":
        assert out["score"] > 0.5
        assert any("delicious" in r or "wonderful" in r or "amazing" in r for r in out["reasons"])
    if label == "negative":
        assert out["score"] < -0.5
        assert any("disgusting" in r or "horrible" in r for r in out["reasons"])


async def test_angry_refund_review_is_urgent() -> None:
    out = await run(
        "review_processing",
        {
            "review_text": "I waited an hour, the order was wrong and nobody cared. I want a REFUND now!",
            "rating": 1,
        },
    )
    assert out["urgency"] == "high"
    assert out["sentiment"] == "negative"
    assert "wait time" in out["topics"]
    assert any("refund" in action.lower() for action in out["suggested_actions"])
    assert "contact us" in out["draft_reply"].lower()


async def test_safety_words_make_any_review_urgent() -> None:
    out = await run("review_processing", {"review_text": "Nice decor, but my son got sick after the meal."})
    assert out["urgency"] == "high"
    assert any("safety" in action for action in out["suggested_actions"])


async def test_happy_review_is_low_urgency_with_thanks() -> None:
    out = await run(
        "review_processing",
        {
            "review_text": "Lovely staff, delicious food and fair prices!",
            "rating": 5,
            "business_name": "Cafe Uno",
        },
    )
    assert out["urgency"] == "low"
    assert out["sentiment"] == "positive"
    assert {"staff", "food", "price"} <= set(out["topics"])
    assert "Thank you" in out["draft_reply"]
    assert "Cafe Uno" in out["draft_reply"]


async def test_rating_overrides_bland_text() -> None:
    out = await run("review_processing", {"review_text": "It was the delivery.", "rating": 1})
    assert out["sentiment"] == "negative"
    assert out["urgency"] in ("medium", "high")


@pytest.mark.parametrize("tone", ["friendly", "professional", "apologetic", "enthusiastic", "neutral"])
async def test_replies_by_tone_and_sentiment(tone: str) -> None:
    happy = await run(
        "ai_generation", {"review_text": "Great service, thank you!", "tone": tone, "business_name": "Joe's"}
    )
    angry = await run("ai_generation", {"review_text": "Terrible, cold food and rude staff.", "tone": tone})
    assert "thank" in happy["reply"].lower()
    assert "Joe's" in happy["reply"]
    assert "sorry" in angry["reply"].lower() or "apologise" in angry["reply"].lower()
    assert "contact us" in angry["reply"].lower()


async def test_tones_differ() -> None:
    replies = {
        (await run("ai_generation", {"review_text": "Great!", "tone": tone}))["reply"]
        for tone in ("friendly", "professional", "enthusiastic")
    }
    assert len(replies) == 3


async def test_prompt_analysis_flags_a_weak_prompt_and_keeps_it() -> None:
    prompt = "Write something good about our product."
    out = await run("prompt_analysis", {"prompt": prompt, "goal": "a launch tweet"})
    joined = " ".join(out["issues"]).lower()
    for word in ("short", "role", "format", "examples", "vague", "constraints"):
        assert word in joined
    assert prompt in out["improved_prompt"]
    assert "a launch tweet" in out["improved_prompt"]
    assert out["rationale"]


async def test_prompt_analysis_accepts_a_good_prompt() -> None:
    prompt = (
        "You are a senior copywriter. Write a product description for a steel water bottle aimed at hikers. "
        "Return exactly 3 bullet points in markdown, each under 20 words. Do not mention competitors. "
        "Example: Input: 'thermos' Output: '- Keeps drinks cold for 24 hours'"
    )
    out = await run("prompt_analysis", {"prompt": prompt})
    assert out["issues"] == []
    assert "No common issues" in out["rationale"]


async def test_usage_and_determinism() -> None:
    task = sentiment_analysis.build_task(
        sentiment_analysis.SentimentPayload(text="Good coffee, slow service.")
    )
    first = await PROVIDER.run(task)
    second = await OfflineProvider().run(task)
    assert first.output == second.output
    usage = first.usage
    assert (usage.provider, usage.model, usage.cost_usd) == ("offline", "rules-v1", Decimal(0))
    assert usage.input_tokens is None
    assert usage.output_tokens is None
    assert usage.latency_ms >= 0


async def test_non_english_request_is_answered_with_a_note() -> None:
    payload = ai_generation.AIGenerationPayload(review_text="Très bon!", language="fr")
    completion = await PROVIDER.run(ai_generation.build_task(payload))
    assert completion.output.reply
    assert "English only" in str(completion.extra["note"])


async def test_unknown_kind_is_fatal() -> None:
    payload = sentiment_analysis.SentimentPayload(text="hello")
    task = LLMTask(
        kind="translate",
        instructions="x",
        input="hello",
        output=sentiment_analysis.SentimentResult,
        payload=payload,
    )
    with pytest.raises(FatalProviderError) as info:
        await PROVIDER.run(task)
    assert not info.value.retryable
    assert "translate" in str(info.value)


async def test_output_not_fitting_the_model_is_fatal() -> None:
    class Narrow(BaseModel):
        only: int

    payload = sentiment_analysis.SentimentPayload(text="hello")
    task = LLMTask(kind="sentiment_analysis", instructions="x", input="hello", output=Narrow, payload=payload)
    with pytest.raises(FatalProviderError):
        await PROVIDER.run(task)


async def test_aclose_is_harmless() -> None:
    await OfflineProvider().aclose()


review_texts = st.text(min_size=1, max_size=5000).filter(lambda s: bool(s.strip()))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=review_texts,
    tone=st.sampled_from(["friendly", "professional", "apologetic", "enthusiastic", "neutral"]),
    rating=st.none() | st.integers(1, 5),
    business=st.none() | st.text(max_size=200),
)
def test_any_valid_review_yields_valid_results(
    text: str, tone: str, rating: int | None, business: str | None
) -> None:
    raw = {"review_text": text, "tone": tone, "rating": rating, "business_name": business}
    payload = ai_generation.JOB_TYPE.parse(raw)
    assert isinstance(payload, ai_generation.AIGenerationPayload)

    async def go() -> tuple[Any, Any, Any]:
        reply = await PROVIDER.run(ai_generation.build_task(payload))
        triage = await PROVIDER.run(
            review_processing.build_task(
                review_processing.ReviewProcessingPayload(review_text=text, rating=rating)
            )
        )
        sentiment = await PROVIDER.run(
            sentiment_analysis.build_task(sentiment_analysis.SentimentPayload(text=text))
        )
        return reply.output, triage.output, sentiment.output

    reply, triage, sentiment = asyncio.run(go())
    assert reply.reply.strip()
    assert triage.draft_reply.strip()
    assert triage.urgency in ("low", "medium", "high")
    assert -1.0 <= sentiment.score <= 1.0
    assert sentiment.reasons


@settings(max_examples=40, deadline=None, database=None)
@given(prompt=st.text(min_size=1, max_size=20000).filter(lambda s: bool(s.strip())))
def test_any_prompt_is_analysed_and_kept(prompt: str) -> None:
    payload = prompt_analysis.PromptAnalysisPayload(prompt=prompt)
    out = asyncio.run(PROVIDER.run(prompt_analysis.build_task(payload))).output
    assert payload.prompt in out.improved_prompt
