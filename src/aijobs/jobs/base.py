"""What a job type is: a name, a credit cost, a payload model, an output model, a time limit,
a retry policy and a handler (any async function `(payload, ctx) -> output`), checked when
it is made. `aijobs.jobs.define` builds them (`@job_type`, `llm_job`).

The cost here is the source of truth: `aijobs migrate` copies it into the `job_types` table,
which the SQL credit function reads, so a refused or charged creation always agrees with the
Python side.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from aijobs.jobs.account import AccountSettings
from aijobs.providers.base import (
    DeltaSink,
    LLMTask,
    M,
    Provider,
    RetryableProviderError,
    StreamingProvider,
    Usage,
)

#: What a job type may be called: the API's `type` field and the `job_types` key accept this.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Above this a time limit is a mistake, not a choice (it also bounds JOB_TIMEOUT_SECONDS).
MAX_TIMEOUT_SECONDS = 86400.0
#: A job's attempts are at most 100 (the max_attempts domain in the database).
MAX_ATTEMPTS = 100
#: The credit cost is an SQL integer.
MAX_COST = 2_147_483_647


class JobTypeError(ValueError):
    """A job type that cannot be registered: names the type and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"job type {name!r}: {reason}")
        self.name = name
        self.reason = reason


class InvalidOutput(RetryableProviderError):
    """A handler's answer that its output model refuses. Retried like a model's invalid
    answer (another attempt may answer well), then failed and refunded."""


@dataclass(frozen=True)
class JobContext:
    """What a handler may use besides its payload."""

    job_id: UUID
    attempt: int
    provider: Provider
    log: logging.Logger
    #: The job owner's settings, for types registered with `account_settings=True`.
    account: AccountSettings | None = None
    #: Where the text of a streamable answer goes as the model writes it (None: not streamed).
    deltas: DeltaSink | None = None


@dataclass(frozen=True)
class HandlerResult:
    """A handler's full answer: the JSON stored on the job, and the provider usage for the attempt."""

    result: dict[str, Any]
    usage: Usage | None = None


@dataclass(frozen=True)
class Retry:
    """A type's own retry policy; None fields take the deployment's (MAX_RETRIES, RETRY_*)."""

    max_attempts: int | None = None
    base_seconds: float | None = None
    max_seconds: float | None = None


Handler = Callable[[Any, JobContext], Awaitable[Any]]
TaskBuilder = Callable[[Any, AccountSettings | None], LLMTask[Any]]


@dataclass(frozen=True, eq=False)  # identity: two definitions of one name are two types
class JobType:
    """A registered kind of job. Build one with `@job_type` or `llm_job`; checked on creation,
    so a bad definition fails at import with the type's name and the reason."""

    name: str
    cost: int
    payload_model: type[BaseModel]
    handler: Handler
    output_model: type[BaseModel] | None = None
    timeout_seconds: float = 60.0
    description: str = ""
    example: dict[str, Any] | None = None
    retry: Retry = field(default_factory=Retry)
    #: Whether the worker loads the owner's `AccountSettings` into `ctx.account`.
    account_settings: bool = False
    #: For LLM types: the provider request for a payload (what `llm_job` sends).
    build_task: TaskBuilder | None = None
    #: Whether the worker publishes the answer's text as it is written (a plain-text answer,
    #: `LLMTask.text_field`, or the `LLMTask.stream_field` of a structured one): subscribers of
    #: the job's events get it as `delta` events.
    streams: bool = False

    def __post_init__(self) -> None:
        problem = _check(self)
        if problem:
            raise JobTypeError(str(self.name), problem)
        # `timeout_seconds=30` is a float to the database (job_types.timeout_seconds is real).
        object.__setattr__(self, "timeout_seconds", float(self.timeout_seconds))

    def parse(self, payload: object) -> BaseModel:
        """Validate raw JSON into the payload model (raises pydantic.ValidationError)."""
        return self.payload_model.model_validate(payload)

    async def run(self, payload: BaseModel, ctx: JobContext) -> HandlerResult:
        """Run the handler and shape what it returned into the stored result, checked
        against the output model (`InvalidOutput`, retryable, when it does not fit)."""
        return self.shape(await self.handler(payload, ctx))

    def shape(self, answer: object) -> HandlerResult:
        """`answer` as the stored result: an output model instance or a dict it accepts becomes
        `{"output": ...}` (None too, for a type without output model); a `HandlerResult` is
        stored as it is (`run_task` makes one with `provider` and `model` beside `output`)."""
        if isinstance(answer, HandlerResult):
            # Full control, stored as given: `run_task`'s answers were validated by the provider.
            return answer
        if answer is None and self.output_model is None:
            return HandlerResult(result={"output": None})
        return HandlerResult(result={"output": self._checked(answer)})

    def _checked(self, output: object) -> Any:
        model = self.output_model
        if model is None:
            if isinstance(output, BaseModel):
                return output.model_dump(mode="json")
            return output
        try:
            value = (
                output
                if isinstance(output, model)
                else model.model_validate(output.model_dump() if isinstance(output, BaseModel) else output)
            )
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'output'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidOutput(f"the handler's output does not fit {model.__name__}: {fields}") from None
        return value.model_dump(mode="json")


def _check(jt: JobType) -> str | None:
    """Why `jt` cannot be registered, or None."""
    if not isinstance(jt.name, str) or not NAME_PATTERN.match(jt.name):
        return "the name must be 1-63 characters: a lower-case letter, then letters, digits or _"
    if isinstance(jt.cost, bool) or not isinstance(jt.cost, int) or not 0 <= jt.cost <= MAX_COST:
        return f"cost must be a whole number of credits from 0 to {MAX_COST}, not {jt.cost!r}"
    timeout = jt.timeout_seconds
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT_SECONDS
    ):
        return f"timeout_seconds must be above 0 and at most {MAX_TIMEOUT_SECONDS:g}, not {timeout!r}"
    for label, model in (("payload model", jt.payload_model), ("output model", jt.output_model)):
        if model is None and label == "output model":
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return f"the {label} must be a pydantic BaseModel subclass, not {model!r}"
    if not callable(jt.handler) or not inspect.iscoroutinefunction(jt.handler):
        return "the handler must be an async function (async def handler(payload, ctx))"
    retry = jt.retry
    if retry.max_attempts is not None and not 1 <= retry.max_attempts <= MAX_ATTEMPTS:
        return f"retry.max_attempts must be 1-{MAX_ATTEMPTS}, not {retry.max_attempts!r}"
    base, cap = retry.base_seconds, retry.max_seconds
    if (base is not None and not base > 0) or (cap is not None and not cap > 0):
        return "retry.base_seconds and retry.max_seconds must be above 0"
    if base is not None and cap is not None and base > cap:
        return "retry.base_seconds may not exceed retry.max_seconds"
    if jt.example is not None:
        try:
            jt.payload_model.model_validate(jt.example)
        except ValidationError as exc:
            return f"its example does not fit {jt.payload_model.__name__}: {exc.errors()[0]['msg']}"
    return None


def preview(text: str) -> str:
    """How a log line mentions customer text: by size only.

    Reviews and prompts are customer data; logs are read by operators and shipped to other
    systems, so they never carry the text itself (the reliability suite checks with a canary).
    """
    words = len(text.split())
    return f"<{len(text)} chars, {words} words>"


async def run_task(ctx: JobContext, task: LLMTask[M]) -> HandlerResult:
    """Run `task` through the job's provider and shape the stored result the same way for all types.

    A plain-text answer is streamed to `ctx.deltas` where the provider can stream. Provider
    errors propagate untouched: the queue classifies them (retry, back off, give up).
    """
    streamable = task.text_field is not None or task.stream_field is not None
    if ctx.deltas is not None and streamable and isinstance(ctx.provider, StreamingProvider):
        completion = await ctx.provider.stream(task, ctx.deltas)
    else:
        completion = await ctx.provider.run(task)
    usage = completion.usage
    return HandlerResult(
        result={
            "provider": usage.provider,
            "model": usage.model,
            "output": completion.output.model_dump(mode="json"),
        },
        usage=usage,
    )
