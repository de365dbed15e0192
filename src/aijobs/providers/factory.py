"""Choose the provider from settings: OpenAI when a key is set (or LLM_PROVIDER=openai),
otherwise the offline rules provider, announced loudly so nobody mistakes it for an LLM."""

from __future__ import annotations

import importlib
import logging
from urllib.parse import urlsplit, urlunsplit

from aijobs.config import ConfigError, Settings
from aijobs.providers.base import Provider
from aijobs.providers.offline import OfflineProvider

log = logging.getLogger("aijobs.providers")


def wants_openai(settings: Settings) -> bool:
    if settings.llm_provider == "openai":
        return True
    return settings.llm_provider == "auto" and settings.openai_api_key is not None


def build_provider(settings: Settings) -> Provider:
    if ":" in settings.llm_provider:
        return _import_provider(settings)
    if wants_openai(settings):
        return _openai_provider(settings)
    log.warning(
        "⚠️ Using the OFFLINE provider: VADER sentiment and rule-based templates, not an LLM. "
        "Set OPENAI_API_KEY (and optionally OPENAI_BASE_URL) to use a real model."
    )
    return OfflineProvider()


def _openai_provider(settings: Settings) -> Provider:
    """The SDK-backed provider; a local server (OPENAI_BASE_URL) may go without a key."""
    from aijobs.providers.openai import OpenAIProvider

    if settings.openai_api_key is None and not settings.openai_base_url:
        raise ConfigError(
            "LLM_PROVIDER=openai needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
            "OpenAI-compatible server"
        )
    provider = OpenAIProvider.from_settings(settings)
    log.info(
        "🤖 Using OpenAI provider: model %s, %s API, endpoint %s",
        settings.openai_model,
        provider.api,
        shown_url(settings.openai_base_url) if settings.openai_base_url else "api.openai.com",
    )
    return provider


def shown_url(url: str) -> str:
    """`url` fit for a log line: userinfo and query, where proxies and gateways take their
    credentials (`https://user:token@host/v1`, `?api-key=…`), are masked; the rest is kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    _, at, host = parts.netloc.rpartition("@")
    return urlunsplit(
        parts._replace(
            netloc=f"***@{host}" if at else host,
            query="***" if parts.query else "",
            fragment="",
        )
    )


def _import_provider(settings: Settings) -> Provider:
    """LLM_PROVIDER=package.module:Factory: a provider of your own (the factory gets Settings).
    Whatever goes wrong on the way is a ConfigError naming the setting, said at start."""
    path = settings.llm_provider
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs the module's own code
        raise ConfigError(f"LLM_PROVIDER={path}: cannot import {module_name!r}: {_said(exc)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"LLM_PROVIDER={path}: {module_name!r} has no callable {attr!r}")
    try:
        provider: Provider = factory(settings)
    except ConfigError:
        raise
    except Exception as exc:  # the factory is the deployment's own code
        raise ConfigError(f"LLM_PROVIDER={path}: {attr}(settings) failed: {_said(exc)}") from None
    if not callable(getattr(provider, "run", None)) or not isinstance(getattr(provider, "name", None), str):
        raise ConfigError(
            f"LLM_PROVIDER={path}: {attr}(settings) returned {type(provider).__name__}, not a provider "
            "(an object with a `name` and an async `run(task)`)"
        )
    log.info("🤖 Using provider %s from %s", provider.name, path)
    return provider


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
