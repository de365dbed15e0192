"""How an attempt ends: the closed set of outcomes, decided from what the handler did.

completed | retry (backoff) | failed (refund) | cancelled (refund) | rate_limited (rescheduled,
attempt given back) | handed_back (graceful shutdown, or the provider paused for its
configuration: attempt given back). The worker only
builds these `Finish` rows; `job_finish_many` persists them, fenced by the lease token.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from aijobs.db.rows import ClaimedJob, Finish
from aijobs.errors import UnknownJobType
from aijobs.providers.base import (
    MisconfiguredProviderError,
    ProviderError,
    RateLimitedError,
    Usage,
    storable_text,
)
from aijobs.queue.retry import RetryPolicy

MAX_ERROR_CHARS = 2000


class UnstorableAnswer(ProviderError):
    """The provider answered something PostgreSQL cannot store (a NUL in the model's text,
    say). Stored altered it would no longer be the answer, so the attempt fails instead; a
    model may answer cleanly next time, so it is retried while attempts remain."""

    retryable = True


def _usage_fields(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {}
    return {
        "provider": usage.provider,
        "model": usage.model,
        "request_id": usage.request_id,
        "latency_ms": usage.latency_ms,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_usd": usage.cost_usd,
    }


def describe(exc: BaseException) -> str:
    """A one-line error for the job row: what failed and why, never a traceback."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        text = "timed out: the attempt exceeded its job type's time limit"
    elif isinstance(exc, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        text = f"invalid payload: {fields}"
    else:
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, ProviderError):
            text = f"{type(exc).__name__}: {text}"
    # Error texts quote what servers and models sent: nothing in them may stop the write.
    return storable_text(text[:MAX_ERROR_CHARS])


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProviderError):
        return exc.retryable
    # Bad input and unknown types fail the same way every time: do not spend retries on them.
    return not isinstance(exc, ValidationError | UnknownJobType)


def _end(job: ClaimedJob, status: str, outcome: str, usage: Usage | None = None, **fields: Any) -> Finish:
    """The attempt `job` holds (id and lease token: the fence) ending as `outcome`."""
    return Finish(
        id=job.id,
        lease_token=job.lease_token,
        status=status,
        outcome=outcome,
        **_usage_fields(usage),
        **fields,
    )


def completed(job: ClaimedJob, result: dict[str, object], usage: Usage | None) -> Finish:
    return _end(job, "completed", "completed", usage, result=result)


def from_error(job: ClaimedJob, exc: BaseException, policy: RetryPolicy) -> Finish:
    """Retry with backoff while attempts remain and the error is retryable; else fail."""
    usage = exc.usage if isinstance(exc, ProviderError) else None
    error = describe(exc)
    if isinstance(exc, RateLimitedError):
        return _end(
            job,
            "pending",
            "rate_limited",
            usage,
            error=error,
            retry_in=max(exc.retry_after, 0.0),
            give_back=True,
        )
    if isinstance(exc, MisconfiguredProviderError):
        # The provider's configuration failed, not the job: it waits, pending, for the pause
        # to lift, with its attempt given back and nothing refunded.
        return _end(job, "pending", "handed_back", usage, error=error, retry_in=0.0, give_back=True)
    if is_retryable(exc) and job.attempts < job.max_attempts:
        return _end(job, "pending", "retry", usage, error=error, retry_in=policy.next_delay(job.attempts))
    return _end(job, "failed", "failed", usage, error=error)


def refused(finish: Finish, reason: str) -> Finish:
    """The attempt `finish` ended, as a failure: PostgreSQL refused to store `finish` itself.

    Only the fence (id, lease token) is kept from it, since any other field may be what was
    refused; the attempt's usage is lost with it.
    """
    error = storable_text(f"the outcome of this attempt could not be stored: {reason}"[:MAX_ERROR_CHARS])
    return Finish(
        id=finish.id, lease_token=finish.lease_token, status="failed", outcome="failed", error=error
    )


def cancelled(job: ClaimedJob) -> Finish:
    return _end(job, "cancelled", "cancelled", error="cancelled while running")


def handed_back(job: ClaimedJob) -> Finish:
    """Graceful shutdown, or a lease the worker cannot renew: the job goes back to pending at
    once and keeps its attempt."""
    return _end(job, "pending", "handed_back", retry_in=0.0, give_back=True)
