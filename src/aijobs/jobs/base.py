"""What a job type is: a payload model, a credit cost, a time limit and a handler.

One module per type in this package; `aijobs.jobs.registry()` lists them. The cost here is the
source of truth: `aijobs migrate` copies it into the `job_types` table, which the SQL credit
function reads, so a refused or charged creation always agrees with the Python side.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from aijobs.providers.base import DeltaSink, LLMTask, M, Provider, StreamingProvider, Usage


class Payload(BaseModel):
    """Base of every payload model: unknown fields are an error, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


@dataclass(frozen=True)
class JobContext:
    """What a handler may use besides its payload."""

    job_id: UUID
    attempt: int
    provider: Provider
    log: logging.Logger
    #: Where the text of a streamable answer goes as the model writes it (None: not streamed).
    deltas: DeltaSink | None = None


@dataclass(frozen=True)
class HandlerResult:
    """A handler's answer: the JSON stored on the job, and the provider usage for the attempt."""

    result: dict[str, Any]
    usage: Usage | None = None


Handler = Callable[[Any, JobContext], Awaitable[HandlerResult]]


@dataclass(frozen=True)
class JobType:
    """A registered kind of job."""

    name: str
    description: str
    cost: int
    timeout_seconds: float
    payload_model: type[Payload]
    handler: Handler
    example: dict[str, Any]
    #: Whether the worker publishes the answer's text as it is written (a plain-text answer,
    #: `LLMTask.text_field`, or the `LLMTask.stream_field` of a structured one): subscribers of
    #: the job's events get it as `delta` events.
    streams: bool = False

    def parse(self, payload: object) -> Payload:
        """Validate raw JSON into the payload model (raises pydantic.ValidationError)."""
        return self.payload_model.model_validate(payload)


# --- Shared helpers for the job modules -------------------------------------------------------


class Output(BaseModel):
    """Base of every output model.

    `extra="forbid"` gives `additionalProperties: false`, and subclasses declare no defaults, so
    the JSON schema lists every property as required: both are what OpenAI's strict
    structured outputs demand, and the same model then validates the offline provider's answer.
    """

    model_config = ConfigDict(extra="forbid")


SentimentLabel = Literal["positive", "negative", "neutral", "mixed"]


def _blank_to_none(value: object) -> object:
    """Web forms send "" for an untouched optional field; treat that as "not given"."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


#: ISO 639-1 style language code: two letters, stored lower-case ("EN" is accepted as "en").
LanguageCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z]{2}$")
]
#: Optional business name: blank means absent, at most 200 characters.
BusinessName = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(_blank_to_none)]
#: Optional star rating the customer gave.
Rating = Annotated[Annotated[int, Field(ge=1, le=5)] | None, BeforeValidator(_blank_to_none)]


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
