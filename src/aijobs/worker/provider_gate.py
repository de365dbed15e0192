"""Provider rate limits and pauses shared by every worker, kept in PostgreSQL
(aijobs.provider_limits).

Four duties, one object per worker:
  * `pause()` — the producer asks before each claim. While a provider is held (it answered 429,
    or our shared budget ran out) or paused (below) no worker claims jobs for it. The answer is
    cached for about a second, so a worker with no hold pays one tiny query per second, not one
    per claim.
  * `provider` — the worker's provider wrapped so it never calls out during a hold or a pause
    (read afresh before each call to a remote API, whose calls dwarf one primary-key lookup),
    and, when OPENAI_RPM / OPENAI_TPM are set, takes a slot from the shared sliding-window
    budget first (waiting briefly in place, or handing the job back when the wait is long).
  * pauses — a call that meets a misconfiguration (`MisconfiguredProviderError`: a wrong key,
    an unknown model, nothing at the base URL) pauses the provider for every worker, with no
    end set: the job goes back to pending, its attempt given back, nothing failed or refunded.
    While the pause stands, one worker at a time (whoever claims the probe turn, every
    PROVIDER_PROBE_SECONDS) probes the provider, and lifts the pause when it is answered. The
    pause and the resume are logged once each, by the worker that made them.
  * `settle()` — after an attempt ended `rate_limited`: set the hold for everyone, add the wait to
    the job's total, and past RATE_LIMIT_MAX_WAIT_SECONDS turn the reschedule into a failure with
    a clear error (the refund trigger does the rest). The job waits at least the retry policy's
    backoff for the number of times it was rate limited, whatever the provider said: a 429 that
    says "retry now" (Retry-After: 0) would otherwise bring it straight back, over and over, and
    never spend its wait budget (a rate limit gives its attempt back, so MAX_RETRIES cannot end
    it either).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import psycopg

from aijobs.config import Settings
from aijobs.db.rows import ClaimedJob, Finish
from aijobs.db.store import Store
from aijobs.providers.base import (
    Completion,
    DeltaSink,
    LLMTask,
    M,
    MisconfiguredProviderError,
    ProbingProvider,
    Provider,
    ProviderError,
    RateLimitedError,
    StreamingProvider,
)
from aijobs.queue.retry import RetryPolicy

log = logging.getLogger("aijobs.worker")

#: A budget wait shorter than this is spent in place; a longer one hands the job back.
INLINE_BUDGET_WAIT = 5.0
#: Longest sleep between two looks at a hold (a hold can be lifted by hand).
MAX_PAUSE = 5.0
#: How the gate's own refusal starts: a job held back by a hold in force does not extend it.
HELD_BACK = "held back:"


class ProviderGate:
    """Shared holds and budgets for the one provider a worker uses."""

    def __init__(
        self, store: Store, settings: Settings, provider: Provider, policy: RetryPolicy | None = None
    ) -> None:
        self.store = store
        self.name = provider.name
        self.max_wait = settings.rate_limit_max_wait_seconds
        self.policy = policy or RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)
        self.check_every = min(1.0, settings.polling_seconds)
        self.probe_every = settings.provider_probe_seconds
        self._hold_until = 0.0  # monotonic deadline of the hold last seen
        self._checked_at = float("-inf")
        #: Why the provider is paused, as last read (None: it was not).
        self.paused_reason: str | None = None
        self._next_probe_look = float("-inf")
        self._inner = provider
        rpm, tpm = (settings.openai_rpm, settings.openai_tpm) if provider.name == "openai" else (None, None)
        self.budget = Budget(self, rpm, tpm, settings.rate_limit_window_seconds) if (rpm or tpm) else None
        self.provider: Provider = GatedProvider(provider, self)

    # -- holds ----------------------------------------------------------------------------
    async def pause(self, *, fresh: bool = False) -> float:
        """Seconds to hold back from the provider now (0: go ahead).

        Cached for up to a second for the producer; `fresh` reads the row, as before each call
        out (one primary-key lookup beside a call that takes hundreds of milliseconds), so a
        hold set by another worker a moment ago is never missed.
        """
        now = time.monotonic()
        if fresh or now - self._checked_at >= self.check_every:
            self._checked_at = now
            try:
                async with self.store.session() as session:
                    state = await session.providers.state(self.name)
                seconds, self.paused_reason = state.hold_seconds, state.paused_reason
            except (psycopg.Error, OSError):
                seconds = 0.0  # the claim that follows meets the same outage and backs off
            if self.paused_reason is not None:
                # A pause has no end of its own: look again at the next check.
                seconds = max(seconds, self.check_every)
            self._hold_until = time.monotonic() + seconds
        return max(self._hold_until - time.monotonic(), 0.0)

    async def claim_pause(self) -> float:
        """What the producer sleeps before claiming: the hold, capped so holds are re-read.
        While the provider is paused, probe it first when it is this worker's turn."""
        held = await self.pause()
        if self.paused_reason is not None and await self.probe():
            return 0.0
        return min(held, MAX_PAUSE)

    # -- pauses ---------------------------------------------------------------------------
    async def record_pause(self, reason: str) -> None:
        """Pause the provider for every worker: its configuration failed a call."""
        reason = reason[:500]
        try:
            async with self.store.session() as session:
                started = await session.providers.pause(
                    provider=self.name, reason=reason, probe_seconds=self.probe_every
                )
        except (psycopg.Error, OSError) as exc:
            log.warning("⛔ Could not record the %s pause (%s): %s", self.name, type(exc).__name__, reason)
            return
        self.paused_reason = reason
        self.note_hold(self.check_every)
        if started:
            log.error(
                "⛔ %s paused for every worker: %s. Jobs wait, pending, with no attempt spent; "
                "probing every %gs until it answers (fix its key, model or base URL, e.g. "
                "OPENAI_API_KEY, OPENAI_MODEL, OPENAI_BASE_URL)",
                self.name,
                reason,
                self.probe_every,
                extra={"provider": self.name},
            )

    async def probe(self) -> bool:
        """Probe the paused provider if it is this worker's turn; True when the pause was lifted
        (by this worker). A provider that cannot probe is let go at its turn: the next job's
        call tests the configuration instead, and pauses it again if it still fails."""
        now = time.monotonic()
        if now < self._next_probe_look:
            return False  # a producer woken often (by NOTIFY) asks the database once a check
        self._next_probe_look = now + min(self.check_every, self.probe_every)
        try:
            async with self.store.session() as session:
                reason = await session.providers.probe_claim(
                    provider=self.name, probe_seconds=self.probe_every
                )
        except (psycopg.Error, OSError):
            return False
        if reason is None:
            return False  # not due yet, or another worker probes this turn
        if isinstance(self._inner, ProbingProvider):
            try:
                await self._inner.probe()
            except MisconfiguredProviderError as exc:
                await self.record_pause(str(exc))
                log.debug("%s still paused after a probe: %s", self.name, exc)
                return False
            except ProviderError:
                pass  # it answered: whatever else is wrong, it is not the configuration
            except Exception as exc:  # a probe must never stop the producer
                log.warning("the probe of %s failed unexpectedly (%r); still paused", self.name, exc)
                return False
        try:
            async with self.store.session() as session:
                lasted = await session.providers.resume(self.name)
        except (psycopg.Error, OSError):
            return False
        self.paused_reason = None
        self._hold_until = 0.0
        self._checked_at = float("-inf")
        if lasted is not None:
            log.info(
                "▶️ %s answers again: resumed for every worker after a pause of %.0fs",
                self.name,
                lasted,
                extra={"provider": self.name},
            )
        return True

    def note_hold(self, seconds: float) -> None:
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    async def settle(self, job: ClaimedJob, finish: Finish) -> Finish:
        """Share a rate limit with every worker and bound the job's total wait."""
        if finish.outcome != "rate_limited":
            return finish
        retry_after = max(finish.retry_in or 0.0, 0.0)
        reason = (finish.error or "rate limited")[:500]
        try:
            async with self.store.session() as session:
                # The job's own backoff, this being its n-th rate limit (the one ending now
                # is not counted yet: its attempt row is written with the finish).
                backoff = self.policy.next_delay(await session.providers.rate_limited_attempts(job.id) + 1)
                hold = await session.providers.rate_limited(
                    provider=self.name,
                    job_id=job.id,
                    lease_token=job.lease_token,
                    retry_after=retry_after,
                    reason=reason,
                    extend=not reason.startswith(HELD_BACK),
                    min_wait=backoff,
                )
        except (psycopg.Error, OSError) as exc:
            log.warning("⏸️ Could not record the %s rate limit (%s); rescheduling anyway", self.name, exc)
            self.note_hold(retry_after)
            return replace(finish, retry_in=max(retry_after, self.policy.next_delay(1)))
        self.note_hold(hold.hold_seconds)
        total = hold.total_wait_seconds
        if total is not None and total > self.max_wait:
            error = (
                f"rate limited by {self.name} for {total:.0f}s in total, more than "
                f"RATE_LIMIT_MAX_WAIT_SECONDS ({self.max_wait:g}s); giving up. Last error: {reason}"
            )
            log.error("❌ Job %s failed: %s; credits refunded", job.id, error)
            return replace(
                finish, status="failed", outcome="failed", error=error, retry_in=None, give_back=False
            )
        log.info("⏸️ %s held for every worker for %.1fs", self.name, hold.hold_seconds)
        return replace(finish, retry_in=max(retry_after, hold.hold_seconds, backoff))


class Budget:
    """The optional shared RPM/TPM budget: a sliding log of calls in `provider_calls`.

    A call holds its place in the log from its reservation until one window after it ended.
    """

    def __init__(self, gate: ProviderGate, rpm: int | None, tpm: int | None, window: float) -> None:
        self.gate = gate
        self.rpm = rpm
        self.tpm = tpm
        self.window = window

    def describe(self) -> str:
        parts = [f"OPENAI_RPM={self.rpm}"] if self.rpm else []
        parts += [f"OPENAI_TPM={self.tpm}"] if self.tpm else []
        return ", ".join(parts) + f" per {self.window:g}s"

    async def reserve(self, tokens: int) -> int:
        """A slot for one call (its id), waiting in place briefly; else RateLimitedError."""
        deadline = time.monotonic() + INLINE_BUDGET_WAIT
        while True:
            async with self.gate.store.session() as session:
                slot = await session.providers.budget_reserve(
                    provider=self.gate.name,
                    rpm=self.rpm,
                    tpm=self.tpm,
                    tokens=tokens,
                    window_seconds=self.window,
                )
            if slot.ok and slot.call_id is not None:
                return slot.call_id
            wait = slot.wait_seconds + random.uniform(0, 0.05)
            if time.monotonic() + wait > deadline:
                raise RateLimitedError(
                    f"shared budget {self.describe()} is used up; back in {wait:.1f}s", retry_after=wait
                )
            await asyncio.sleep(wait)

    async def settle(self, call_id: int, tokens: int | None) -> None:
        """The call is over: count it from now, with the tokens it used.

        Counting from the end is conservative by one call's latency, and makes the guarantee
        hold where it matters — at the server, however long a request took to get there.
        """
        try:
            async with self.gate.store.session() as session:
                await session.providers.budget_settle(call_id, tokens)
        except (psycopg.Error, OSError):
            log.warning("could not record the tokens of %s call %d", self.gate.name, call_id)


class GatedProvider:
    """The worker's provider behind the gate: no call during a hold, one budget slot per call."""

    def __init__(self, inner: Provider, gate: ProviderGate) -> None:
        self.inner = inner
        self.gate = gate
        self.name = inner.name
        self.model = inner.model
        # Local providers (offline rules, test doubles) are never rate limited: the cached
        # look is enough for them, and the hot path keeps its round-trip count.
        self.remote = bool(getattr(inner, "shares_rate_limits", False))

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        return await self._call(task, self.inner.run(task))

    async def stream(self, task: LLMTask[M], on_delta: DeltaSink) -> Completion[M]:
        """The inner provider's `stream` where it has one, else its `run`: held and budgeted alike."""
        if isinstance(self.inner, StreamingProvider):
            return await self._call(task, self.inner.stream(task, on_delta))
        return await self._call(task, self.inner.run(task))

    async def _call(self, task: LLMTask[M], call: Coroutine[Any, Any, Completion[M]]) -> Completion[M]:
        try:
            return await self._gated(task, call)
        finally:
            call.close()  # never awaited when held back: no "never awaited" warning

    async def _gated(self, task: LLMTask[M], call: Coroutine[Any, Any, Completion[M]]) -> Completion[M]:
        held = await self.gate.pause(fresh=self.remote)
        if self.gate.paused_reason is not None:
            raise MisconfiguredProviderError(
                f"{HELD_BACK} {self.name} is paused for every worker: {self.gate.paused_reason}"
            )
        if held > 0:
            raise RateLimitedError(
                f"{HELD_BACK} {self.name} is rate limited for every worker for {held:.1f}s more",
                retry_after=held,
            )
        try:
            return await self._budgeted(task, call)
        except MisconfiguredProviderError as exc:
            await self.gate.record_pause(str(exc))
            raise

    async def _budgeted(self, task: LLMTask[M], call: Coroutine[Any, Any, Completion[M]]) -> Completion[M]:
        budget = self.gate.budget
        if budget is None:
            return await call
        call_id = await budget.reserve(estimate_tokens(task, self.inner))
        try:
            completion = await call
        except ProviderError as exc:
            await budget.settle(
                call_id, _total(exc.usage.input_tokens, exc.usage.output_tokens) if exc.usage else None
            )
            raise
        await budget.settle(call_id, _total(completion.usage.input_tokens, completion.usage.output_tokens))
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()


def estimate_tokens(task: LLMTask[Any], provider: Provider) -> int:
    """Tokens a call may use, counted before it is made as OpenAI does: the input (about four
    characters a token) plus the output cap. Settled to the real figure afterwards."""
    chars = len(task.instructions) + len(task.input)
    cap = getattr(provider, "max_output_tokens", 0)
    return chars // 4 + (cap if isinstance(cap, int) else 0)


def _total(inp: int | None, out: int | None) -> int | None:
    if inp is None and out is None:
        return None
    return (inp or 0) + (out or 0)
