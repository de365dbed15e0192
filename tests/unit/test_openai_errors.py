"""SDK exceptions become the queue's provider errors, with messages that name the cause."""

from __future__ import annotations

import httpx2
import openai
import pytest

from aijobs.providers.base import (
    FatalProviderError,
    MisconfiguredProviderError,
    RateLimitedError,
    RetryableProviderError,
    Usage,
)
from aijobs.providers.openai_errors import classify, redact

KEY = "sk-proj-abcdefghijklmnop1234"
REQUEST = httpx2.Request("POST", "https://api.openai.com/v1/responses")
USAGE = Usage(provider="openai")


def status_error(status: int, code: str | None = None, message: str = "boom", **headers: str) -> Exception:
    response = httpx2.Response(status, headers={"x-request-id": "req_1", **headers}, request=REQUEST)
    body = {"message": message, "type": "invalid_request_error", "code": code}
    client = openai.OpenAI(api_key=KEY)
    return client._make_status_error(f"Error code: {status}", body={"error": body}, response=response)


def mapped(exc: Exception) -> Exception:
    result = classify(exc, secret=KEY, usage=USAGE, timeout=3)
    assert result is not None
    return result


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_request_is_fatal(status: int) -> None:
    err = mapped(status_error(status, "some_code", "bad thing"))
    assert isinstance(err, FatalProviderError)
    assert str(err).startswith(f"OpenAI API error: {status} ")
    assert "(some_code): bad thing [request req_1]" in str(err)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refused_key_or_an_unknown_model_is_the_configuration(status: int) -> None:
    err = mapped(status_error(status, "some_code", "bad thing"))
    assert isinstance(err, MisconfiguredProviderError)
    assert str(err).startswith(f"OpenAI API error: {status} ")
    assert "(some_code): bad thing [request req_1]" in str(err)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409])
def test_server_errors_are_retryable(status: int) -> None:
    assert isinstance(mapped(status_error(status)), RetryableProviderError)


def test_429_carries_the_wait() -> None:
    err = mapped(status_error(429, "rate_limit_exceeded", **{"retry-after-ms": "1200"}))
    assert isinstance(err, RateLimitedError) and err.retry_after == 1.2
    default = mapped(status_error(429, "rate_limit_exceeded"))
    assert isinstance(default, RateLimitedError) and default.retry_after == 5.0


def test_a_spent_quota_is_not_a_rate_limit() -> None:
    err = mapped(status_error(429, "insufficient_quota", "You exceeded your current quota"))
    assert isinstance(err, FatalProviderError) and "insufficient_quota" in str(err)


def test_timeouts_and_connection_errors_are_retryable() -> None:
    assert str(mapped(openai.APITimeoutError(REQUEST))) == "OpenAI request timed out after 3s"
    conn = mapped(openai.APIConnectionError(request=REQUEST))
    assert isinstance(conn, RetryableProviderError) and "could not reach the OpenAI API" in str(conn)
    lost = openai.APIConnectionError(request=REQUEST)
    lost.__cause__ = httpx2.ReadError("connection reset")
    assert isinstance(mapped(lost), RetryableProviderError)


def test_nothing_accepting_a_connection_is_the_configuration() -> None:
    refused = openai.APIConnectionError(request=REQUEST)
    refused.__cause__ = httpx2.ConnectError("All connection attempts failed")
    err = mapped(refused)
    assert isinstance(err, MisconfiguredProviderError)
    assert str(err) == "could not connect to the OpenAI API: All connection attempts failed"


def test_the_key_never_appears() -> None:
    err = mapped(status_error(401, "invalid_api_key", f"Incorrect API key provided: {KEY}"))
    assert KEY not in str(err)
    assert redact("key sk-abcdef123 and sk-proj-xyz", None) == "key sk-ab*** and sk-pr***"


def test_other_exceptions_are_left_alone() -> None:
    assert classify(ValueError("x"), secret=KEY, usage=USAGE, timeout=1) is None
