"""The executor: run one claimed job through its handler and turn what happened into a Finish.

Every attempt is bounded by its job type's time limit, independent of the lease (which the
heartbeat keeps alive): a hung provider call ends as a retryable timeout, not a stuck job. A
type's own retry policy (`JobType.retry`) overrides the deployment's backoff for its jobs, and
what its handler returns is checked against its output model (`JobType.run`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any, Protocol
from uuid import UUID

from aijobs.db.rows import ClaimedJob, Finish
from aijobs.jobs import UnknownJobType, get_job_type
from aijobs.jobs.account import AccountSettings
from aijobs.jobs.base import JobContext, JobType
from aijobs.logs import redact_payload
from aijobs.providers.base import Provider, first_unstorable
from aijobs.queue import outcomes
from aijobs.queue.retry import RetryPolicy
from aijobs.worker.streaming import StreamPublisher

log = logging.getLogger("aijobs.worker")

#: How long a job of a type this worker lacks is set aside before a worker looks at it again.
NOT_HERE_SECONDS = 30.0


class AccountSettingsSource(Protocol):
    """Where the worker reads a job owner's `AccountSettings` (for types that use them)."""

    async def for_job(self, job_id: UUID) -> AccountSettings | None:
        """The settings of the account that owns `job_id`, or None when it has none."""
        ...


class Executor:
    def __init__(
        self,
        provider: Provider,
        policy: RetryPolicy,
        *,
        timeout_cap: float | None = None,
        account_settings: AccountSettingsSource | None = None,
        streams: StreamPublisher | None = None,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self.timeout_cap = timeout_cap
        self.streams = streams
        self.account_settings = account_settings
        self._policies: dict[str, RetryPolicy] = {}
        self._missing_logged: set[str] = set()

    def policy_for(self, kind: JobType) -> RetryPolicy:
        """The deployment's backoff with the type's own bounds, if it sets any."""
        policy = self._policies.get(kind.name)
        if policy is None:
            base = kind.retry.base_seconds or self.policy.base_seconds
            cap = kind.retry.max_seconds or max(self.policy.max_seconds, base)
            policy = self._policies[kind.name] = replace(self.policy, base_seconds=base, max_seconds=cap)
        return policy

    async def execute(self, job: ClaimedJob) -> Finish:
        try:
            kind = get_job_type(job.type)
        except UnknownJobType:
            return self.not_here(job)
        except Exception as exc:
            return outcomes.from_error(job, exc, self.policy)
        # Built only when someone will read it: this runs for every job.
        extra: dict[str, Any] = {}
        # The steps of a job at DEBUG: at INFO a job is one line (✅, or its failure).
        if log.isEnabledFor(logging.DEBUG):
            extra = {"job_id": str(job.id), "job_type": job.type, "attempt": job.attempts}
            log.debug(
                "🔒 Locked job %s (%s) for processing, attempt %d/%d",
                job.id,
                job.type,
                job.attempts,
                job.max_attempts,
                extra=extra,
            )
            shown = json.dumps(redact_payload(kind.payload_model, job.payload), ensure_ascii=False)
            log.debug("📝 Payload: %s", shown, extra=extra)
            log.debug("🔄 Processing job %s (%s)...", job.id, job.type, extra=extra)
        # The time limit (`time_limit`) is enforced by the runner's watchdog, which cancels
        # overdue jobs: one timer for the worker instead of one per job on the hot path.
        stream = self.streams.open(job) if self.streams is not None and kind.streams else None
        try:
            payload = kind.parse(job.payload)
            account = None
            if kind.account_settings and self.account_settings is not None:
                account = await self.account_settings.for_job(job.id)
            context = JobContext(
                job_id=job.id,
                attempt=job.attempts,
                provider=self.provider,
                log=log,
                account=account,
                deltas=stream.write if stream is not None else None,
            )
            answer = await kind.run(payload, context)
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
        except (SystemExit, KeyboardInterrupt) as exc:
            # From the handler's own code (sys.exit in a library, say): out of the task,
            # asyncio would end the whole worker with it. Only this attempt fails.
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

    def not_here(self, job: ClaimedJob) -> Finish:
        """A job of a type this worker does not have is handed back, its attempt given back,
        and set aside for `NOT_HERE_SECONDS`: it waits (pending, in the stats) for a worker
        that has the type instead of failing."""
        if job.type not in self._missing_logged:
            self._missing_logged.add(job.type)
            log.warning(
                "⏸️ Job %s is of type %r, which this worker does not have: handed back for a worker "
                "that has it (add its module to AIJOBS_JOB_TYPES or install its package here)",
                job.id,
                job.type,
                extra={"job_id": str(job.id), "job_type": job.type},
            )
        error = f"no job type {job.type!r} in this worker; waiting for a worker that has it"
        return replace(outcomes.handed_back(job), retry_in=NOT_HERE_SECONDS, error=error)

    def failed(self, job: ClaimedJob, exc: BaseException) -> Finish:
        """The outcome of an attempt that raised `exc` (or ran out of time), logged."""
        try:
            policy = self.policy_for(get_job_type(job.type))
        except Exception:
            policy = self.policy
        finish = outcomes.from_error(job, exc, policy)
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
    elif finish.outcome == "handed_back":
        # The provider is paused for its configuration: the gate says so once, not per job.
        log.debug("⏸️ Job %s handed back (attempt kept): %s", job.id, finish.error, extra=extra)
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
