"""Classify what the OpenAI SDK raises into the queue's provider errors.

One retry layer: the SDK's own retries are off, so each failure reaches the queue, which backs
off (5xx, timeouts, a connection lost mid-call), reschedules without spending an attempt (429),
pauses the provider for every worker (401/403: the key; 404: the model; a base URL where
nothing accepts a connection: the configuration, which no job can fix), or fails the job at
once with a refund (400/422: this request is refused).
Messages name the cause — status, error code, the server's words — and never the API key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus

import openai

from aijobs.providers.base import (
    FatalProviderError,
    MisconfiguredProviderError,
    ProviderError,
    RateLimitedError,
    RetryableProviderError,
    Usage,
)
from aijobs.providers.retry_after import retry_after_seconds

#: Wait used when a 429 carries no header saying how long.
DEFAULT_RATE_LIMIT_WAIT = 5.0
#: 429 codes that are not about pace: waiting does not restore a spent quota.
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
#: Statuses that say the configuration is wrong (key, permission, model or path), whatever the job.
CONFIG_STATUSES = frozenset({401, 403, 404})
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{2})[A-Za-z0-9_*\-]*")
MAX_MESSAGE_CHARS = 500


def redact(text: str, secret: str | None) -> str:
    """Remove the API key (and anything shaped like one) from text bound for logs and rows."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_LIKE.sub(r"\1***", text)


#: A run this long shared with the customer's text is taken to be a quote of it.
QUOTE_CHARS = 12


def redact_input(text: str, customer_text: str) -> str:
    """Replace every run of QUOTE_CHARS+ characters that also occurs in `customer_text` with
    '[…]'. Servers quote requests in their errors (a 400 naming the offending input, a 5xx
    echoing the body, a refusal or unparsable answer repeating the review), and these
    messages go to logs and to the job's stored error, where review text must not."""
    if len(text) < QUOTE_CHARS or not customer_text:
        return text
    quoted = [False] * len(text)
    for start in range(len(text) - QUOTE_CHARS + 1):
        if text[start : start + QUOTE_CHARS] in customer_text:
            quoted[start : start + QUOTE_CHARS] = [True] * QUOTE_CHARS
    if not any(quoted):
        return text
    out: list[str] = []
    for ch, hidden in zip(text, quoted, strict=True):
        if not hidden:
            out.append(ch)
        elif not out or out[-1] != "[…]":
            out.append("[…]")
    return "".join(out)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(body, str) and body.strip():
        return body.strip()
    return ""


def describe_status(exc: openai.APIStatusError, secret: str | None) -> str:
    """'OpenAI API error: 401 Unauthorized (invalid_api_key): Incorrect API key provided…'."""
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "HTTP error"
    code = exc.code or (exc.type if isinstance(exc.type, str) else None)
    head = f"OpenAI API error: {status} {phrase}" + (f" ({code})" if code else "")
    message = _server_message(exc)[:MAX_MESSAGE_CHARS]
    text = f"{head}: {message}" if message else head
    if exc.request_id:
        text += f" [request {exc.request_id}]"
    return redact(text, secret)


def classify(exc: Exception, *, secret: str | None, usage: Usage, timeout: float) -> ProviderError | None:
    """The ProviderError for an SDK exception, or None when `exc` is not the SDK's."""
    if isinstance(exc, openai.APITimeoutError):
        return RetryableProviderError(f"OpenAI request timed out after {timeout:g}s", usage=usage)
    if isinstance(exc, openai.APIConnectionError):
        cause = redact(str(exc.__cause__ or exc), secret)[:MAX_MESSAGE_CHARS]
        if _refused_connection(exc):
            # Nothing accepts a connection there (refused, or the name does not resolve): the
            # base URL, not the job, is wrong, or the server is down; a probe finds out when
            # it is back. A connection lost once connected is retried as before.
            return MisconfiguredProviderError(f"could not connect to the OpenAI API: {cause}", usage=usage)
        return RetryableProviderError(f"could not reach the OpenAI API: {cause}", usage=usage)
    if isinstance(exc, openai.APIStatusError):
        message = describe_status(exc, secret)
        status = exc.status_code
        if status == 429 and exc.code not in QUOTA_CODES:
            wait = retry_after_seconds(exc.response.headers)
            return RateLimitedError(
                message, retry_after=DEFAULT_RATE_LIMIT_WAIT if wait is None else wait, usage=usage
            )
        if status >= 500 or status in (408, 409):
            return RetryableProviderError(message, usage=usage)
        if status in CONFIG_STATUSES:
            return MisconfiguredProviderError(message, usage=usage)
        return FatalProviderError(message, usage=usage)
    if isinstance(exc, openai.APIResponseValidationError):
        return RetryableProviderError("OpenAI returned a response the SDK could not read", usage=usage)
    if isinstance(exc, openai.LengthFinishReasonError):
        return RetryableProviderError(
            "OpenAI answer incomplete: the output token cap was reached", usage=usage
        )
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return FatalProviderError("OpenAI refused the request: content filter", usage=usage)
    return None


def _refused_connection(exc: openai.APIConnectionError) -> bool:
    """Whether the SDK could not open a connection at all (its HTTP client's ConnectError:
    refused, unreachable, a name that does not resolve), as opposed to losing one. Matched by
    name, as the SDK's HTTP client package is its own business."""
    cause = exc.__cause__
    return cause is not None and any(cls.__name__ == "ConnectError" for cls in type(cause).__mro__)
