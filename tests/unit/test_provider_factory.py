"""Choosing the provider from settings, and what the choice says in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aijobs.config import load_settings
from aijobs.providers.factory import build_provider, shown_url, wants_openai
from aijobs.providers.offline import OfflineProvider
from aijobs.providers.openai import OpenAIProvider


async def test_the_startup_line_masks_credentials_in_the_base_url(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        _env_file=None,
        openai_api_key="sk-test",
        openai_base_url="https://alice:s3cr3t-token@llm-proxy.internal:8443/v1?api-key=q-s3cr3t#x",
    )
    with caplog.at_level(logging.INFO, logger="aijobs.providers"):
        provider = build_provider(settings)
    assert isinstance(provider, OpenAIProvider)
    await provider.aclose()
    assert "s3cr3t" not in caplog.text and "alice" not in caplog.text
    assert "https://***@llm-proxy.internal:8443/v1?***" in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1"),
        ("https://token@[::1]:8080/v1", "https://***@[::1]:8080/v1"),
        ("https://a@b@host/v1", "https://***@host/v1"),
        ("https://host/v1?key=1", "https://host/v1?***"),
        ("http://[::1", "(an unreadable URL)"),
    ],
)
def test_shown_url(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_an_empty_key_in_the_environment_means_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("LLM_PROVIDER", "auto")
    settings = load_settings()
    assert not wants_openai(settings)
    assert isinstance(build_provider(settings), OfflineProvider)
