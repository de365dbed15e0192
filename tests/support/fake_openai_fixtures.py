"""Fixtures for the OpenAI path: a fake OpenAI-compatible server on loopback, and settings
that point the real SDK at it. Import them into a test module or a conftest.py:

    from tests.support.fake_openai_fixtures import fake_openai, openai_settings  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from aijobs.config import Settings
from aijobs.providers.fake_openai import FakeOpenAI, Recorded
from aijobs.providers.openai import OpenAIProvider

#: A key shaped like a real one, so tests can check it never reaches a log, row or error.
TEST_KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started fake server (random port); `fake_openai.script(Step…)` scripts its answers."""
    with FakeOpenAI() as fake:
        yield fake


def openai_settings_for(settings: Settings, fake: FakeOpenAI, **overrides: Any) -> Settings:
    """`settings` with the OpenAI provider aimed at `fake` (and any overrides)."""
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "openai_api_key": SecretStr(TEST_KEY),
        "openai_base_url": fake.base_url,
        "openai_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@pytest.fixture
def openai_settings(settings: Settings, fake_openai: FakeOpenAI) -> Settings:
    return openai_settings_for(settings, fake_openai)


def provider_for(settings: Settings) -> OpenAIProvider:
    return OpenAIProvider.from_settings(settings)


def answered(fake: FakeOpenAI) -> list[Recorded]:
    """Requests the fake answered 200."""
    return [r for r in fake.requests if r.status == 200]
