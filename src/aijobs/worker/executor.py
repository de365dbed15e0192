"""The executor: run one claimed job through its handler and turn what happened into a Finish.

Every attempt is bounded by its job type's time limit, independent of the lease (which the
heartbeat keeps alive): a hung provider call ends as a retryable timeout, not a stuck job.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aijobs.db.rows import ClaimedJob, Finish
from aijobs.jobs import get_job_type
from aijobs.jobs.base import JobContext
from aijobs.logs import redact_payload
from aijobs.providers.base import Provider, first_unstorable
from aijobs.queue import outcomes
from aijobs.queue.retry import RetryPolicy
from aijobs.worker.streaming import StreamPublisher

log = logging.getLogger("aijobs.worker")


class Executor:
    def __init__(
        self,
        provider: Provider,
        policy: RetryPolicy,
        *,
        timeout_cap: float | None = None,
        streams: StreamPublisher | None = None,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self.timeout_cap = timeout_cap
        self.streams = streams

    async def execute(self, job: ClaimedJob) -> Finish:
        try:
            kind = get_job_type(job.type)
        except Exception as exc:
            return outcomes.from_error(job, exc, self.policy)
        # Built only when someone will read it: this runs for every job.
        extra: dict[str, Any] = {}
        if log.isEnabledFor(logging.INFO):
            extra = {"job_id": str(job.id), "job_type": job.type, "attempt": job.attempts}
            log.info(
                "🔒 Locked job %s (%s) for processing, attempt %d/%d",
                job.id,
                job.type,
                job.attempts,
                job.max_attempts,
                extra=extra,
            )
            shown = json.dumps(redact_payload(kind.payload_model, job.payload), ensure_ascii=False)
            log.info("📝 Payload: %s", shown, extra=extra)
            log.info("🔄 Processing job %s (%s)...", job.id, job.type, extra=extra)
        # The time limit (`time_limit`) is enforced by the runner's watchdog, which cancels
        # overdue jobs: one timer for the worker instead of one per job on the hot path.
        stream = self.streams.open(job) if self.streams is not None and kind.streams else None
        try:
            payload = kind.parse(job.payload)
            context = JobContext(
                job_id=job.id,
                attempt=job.attempts,
                provider=self.provider,
                log=log,
                deltas=stream.write if stream is not None else None,
            )
            answer = await kind.handler(payload, context)
            if stream is not None:
                await stream.close()  # the last pieces are stored before the result is
        except asyncio.CancelledError:
            if stream is not None:
                stream.abort()
            raise
        except Exception as exc:
            if stream is not None:
                stream.abort()
            return self.failed(job, exc)
        found = first_unstorable(answer.result)
        if found is not None:
            char, where = found
            what = "a NUL character" if char == "\x00" else "an unpaired UTF-16 surrogate"
            message = f"the answer cannot be stored: it contains {what} at {where}"
            return self.failed(job, outcomes.UnstorableAnswer(message, usage=answer.usage))
        return outcomes.completed(job, answer.result, answer.usage)

    def failed(self, job: ClaimedJob, exc: BaseException) -> Finish:
        """The outcome of an attempt that raised `exc` (or ran out of time), logged."""
        finish = outcomes.from_error(job, exc, self.policy)
        extra: dict[str, Any] = {"job_id": str(job.id), "job_type": job.type, "attempt": job.attempts}
        _log_error(job, finish, extra)
        return finish

    def time_limit(self, job_type: str) -> float:
        """Seconds an attempt of `job_type` may run: its type's limit, capped by JOB_TIMEOUT_SECONDS."""
        try:
            limit = get_job_type(job_type).timeout_seconds
        except Exception:
            limit = 60.0
        return min(limit, self.timeout_cap or limit)


def _log_error(job: ClaimedJob, finish: Finish, extra: dict[str, Any]) -> None:
    if finish.outcome == "rate_limited":
        log.warning(
            "⏸️ Job %s rate limited; back in %.1fs (attempt kept): %s",
            job.id,
            finish.retry_in or 0,
            finish.error,
            extra=extra,
        )
    elif finish.outcome == "retry":
        log.warning(
            "⚠️ Job %s attempt %d/%d failed: %s; retrying in %.1fs",
            job.id,
            job.attempts,
            job.max_attempts,
            finish.error,
            finish.retry_in or 0,
            extra=extra,
        )
    else:
        log.error(
            "❌ Job %s failed after attempt %d/%d: %s; credits refunded",
            job.id,
            job.attempts,
            job.max_attempts,
            finish.error,
            extra=extra,
        )
