"""Defining a job type: `@job_type` on any async function, `llm_job` for one LLM question."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from aijobs.jobs.account import ACCOUNT_SETTINGS_RULES, AccountSettings, account_block
from aijobs.jobs.base import HandlerResult, JobContext, JobType, JobTypeError, Retry, preview, run_task
from aijobs.providers.base import LLMTask

P = TypeVar("P", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


HandlerFn = Callable[[P, JobContext], Awaitable[Any]]


def job_type(
    name: str,
    *,
    cost: int,
    payload: type[P],
    output: type[BaseModel] | None = None,
    timeout_seconds: float = 60.0,
    description: str | None = None,
    example: Mapping[str, Any] | None = None,
    retry: Retry | None = None,
    account_settings: bool = False,
    streams: bool = False,
) -> Callable[[HandlerFn[P]], JobType]:
    """Make an async function a job type.

    ```python
    @job_type("sync_reviews", cost=1, payload=SyncPayload, output=SyncResult, timeout_seconds=30)
    async def sync_reviews(payload: SyncPayload, ctx: JobContext) -> SyncResult:
        ...
    ```

    The handler returns an instance of `output` (or a dict it accepts; None when there is no
    output model). Raising retries the job with backoff until its attempts are spent, then
    fails and refunds it; `aijobs.providers.base.FatalProviderError` fails it at once.
    `streams=True`: the handler passes `ctx.deltas` on (as `run_task` does), so subscribers see
    the answer's text as it is written.
    """

    def register(handler: HandlerFn[P]) -> JobType:
        doc = (inspect.getdoc(handler) or "").strip().split("\n\n")[0].replace("\n", " ")
        return JobType(
            name=name,
            cost=cost,
            payload_model=payload,
            handler=handler,
            output_model=output,
            timeout_seconds=timeout_seconds,
            description=description if description is not None else doc,
            example=dict(example) if example is not None else None,
            retry=retry or Retry(),
            account_settings=account_settings,
            streams=streams,
        )

    return register


def llm_job(
    name: str,
    *,
    cost: int,
    payload: type[P],
    output: type[Out],
    instructions: str,
    render_input: Callable[[P], str],
    offline: Callable[[P], Any] | None = None,
    text_field: str | None = None,
    stream_field: str | None = None,
    account_settings: bool = False,
    timeout_seconds: float = 120.0,
    description: str = "",
    example: Mapping[str, Any] | None = None,
    retry: Retry | None = None,
) -> JobType:
    """A job type that asks the deployment's LLM provider one question.

    `instructions` are yours and fixed; `render_input(payload)` is the user's data, sent only
    as the user message. The answer must fit `output` (strict structured output); with
    `text_field` the model answers plain text, stored into that field, and streamed to the job's
    subscribers as it is written; `stream_field` streams one string field of a structured
    answer the same way. `offline(payload)`
    answers when no model is configured (without it, such a job fails with a clear error).
    With `account_settings=True` the owner's brand voice and signature go first in the user
    message, as data, and fixed rules about them are added to the instructions.
    """
    for option, field in (("text_field", text_field), ("stream_field", stream_field)):
        # Caught at registration: a field the output lacks failed every job, one paid call
        # per attempt, with "Field required".
        if field is not None and field not in output.model_fields:
            raise JobTypeError(
                name,
                f"{option}={field!r} is not a field of {output.__name__} ({', '.join(output.model_fields)})",
            )
    full_instructions = instructions
    if account_settings:
        full_instructions = f"{instructions.rstrip()}\n{ACCOUNT_SETTINGS_RULES}"

    def build_task(data: P, account: AccountSettings | None = None) -> LLMTask[Out]:
        rule = (lambda: offline(data)) if offline is not None else None
        text = render_input(data)
        if account_settings:
            text = account_block(account) + text
        return LLMTask(
            kind=name,
            instructions=full_instructions,
            input=text,
            output=output,
            payload=data,
            text_field=text_field,
            stream_field=stream_field,
            offline=rule,
        )

    async def handle(data: P, ctx: JobContext) -> HandlerResult:
        task = build_task(data, ctx.account)
        ctx.log.debug("🤖 %s: asking %s about %s", name, ctx.provider.name, preview(task.input))
        return await run_task(ctx, task)

    return JobType(
        name=name,
        cost=cost,
        payload_model=payload,
        handler=handle,
        output_model=output,
        timeout_seconds=timeout_seconds,
        description=description,
        example=dict(example) if example is not None else None,
        retry=retry or Retry(),
        account_settings=account_settings,
        build_task=build_task,
        streams=text_field is not None or stream_field is not None,
    )
