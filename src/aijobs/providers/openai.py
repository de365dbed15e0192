"""`OpenAIProvider`: the official `openai` SDK (AsyncOpenAI) behind the Provider protocol.

Two wire APIs, same behaviour:
  * `responses` (default, OpenAI itself): `responses.parse` with the output model as
    `text_format`, `max_output_tokens`, `reasoning={"effort": …}` for reasoning models, our fixed
    text as `instructions` and the user's data only as the user message. No temperature/top_p:
    the gpt-5 family refuses them.
  * `chat` (LLM_API=chat, for Ollama/vLLM/LM Studio/llama.cpp, which mostly implement only this):
    `chat.completions.parse` with `response_format=` the model, `max_completion_tokens`, a system
    message and a user message.
The raw response is read first (through `with_raw_response`) so an `incomplete` answer or a
`length` finish is a retryable error (a content filter, either way, a fatal one) before any
parsing — never an empty result stored as success — and so the request id and headers are at
hand. Every answer is validated against the
task's output model before it is returned, and refused (retryable, like an empty answer) when a
string in it holds a character PostgreSQL cannot store: NUL, or a lone surrogate that a JSON
`\\uD800` escape decodes to. Stored, such an answer would fail the attempt's write instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Literal, cast

from openai import AsyncAPIResponse, AsyncOpenAI
from openai.lib import type_to_response_format_param
from pydantic import BaseModel, ValidationError

from aijobs.config import Settings
from aijobs.providers.base import (
    Completion,
    DeltaSink,
    FatalProviderError,
    JsonFieldDeltas,
    LLMTask,
    M,
    ProviderError,
    RetryableProviderError,
    TrimmedDeltas,
    Usage,
    first_unstorable,
    storable_text,
)
from aijobs.providers.openai_errors import classify, redact, redact_input
from aijobs.providers.pricing import PriceTable

NAME = "openai"
Api = Literal["responses", "chat"]
#: Model families that take a reasoning effort; others (gpt-4o, local models) reject the field.
REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")
#: Placeholder key for local servers that want none (the SDK insists on one).
NO_KEY = "not-needed"
#: The probe's output cap: the least the Responses API accepts.
PROBE_OUTPUT_TOKENS = 16


def is_reasoning_model(model: str) -> bool:
    return model.startswith(REASONING_PREFIXES) and not model.startswith("gpt-5-chat")


class OpenAIProvider:
    """Answers LLMTasks through an OpenAI-compatible HTTP API."""

    name = NAME
    #: Calls are subject to the API's rate limits, shared by every worker (see provider_gate).
    shares_rate_limits = True

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        api: Api = "responses",
        timeout_seconds: float = 60.0,
        max_output_tokens: int = 2048,
        reasoning_effort: str = "minimal",
        prices: PriceTable | None = None,
        max_retries: int = 0,
    ) -> None:
        self.model: str | None = model
        self._model = model
        self.api: Api = api
        self.timeout = timeout_seconds
        self.max_output_tokens = max_output_tokens
        self.reasoning_effort = reasoning_effort
        self.prices = prices or PriceTable()
        self._secret = api_key
        self.client = AsyncOpenAI(
            api_key=api_key or NO_KEY,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,  # the queue decides about retries, not the SDK
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return cls(
            api_key=key,
            model=settings.openai_model,
            base_url=settings.openai_base_url,
            api=settings.llm_api or "responses",
            timeout_seconds=settings.openai_timeout_seconds,
            max_output_tokens=settings.openai_max_output_tokens,
            reasoning_effort=settings.openai_reasoning_effort,
            prices=PriceTable(settings.price_table()),
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def probe(self) -> None:
        """The smallest request to the configured API and model ("ping", 16 output tokens):
        a paused provider is probed with it (a wrong key, an unknown model or nothing at the
        base URL raise `MisconfiguredProviderError` as a job's call would)."""
        started = time.perf_counter()
        try:
            if self.api == "chat":
                await self.client.chat.completions.create(
                    model=self._model,
                    messages=[{"role": "user", "content": "ping"}],
                    max_completion_tokens=PROBE_OUTPUT_TOKENS,
                )
            else:
                await self.client.responses.create(
                    model=self._model, input="ping", max_output_tokens=PROBE_OUTPUT_TOKENS, store=False
                )
        except Exception as exc:
            mapped = classify(exc, secret=self._secret, usage=self._usage(started), timeout=self.timeout)
            if mapped is None:
                raise
            raise mapped from exc

    # -- the call -------------------------------------------------------------------------
    async def run(self, task: LLMTask[M]) -> Completion[M]:
        started = time.perf_counter()
        if self.api == "chat":
            return await self._classified(task, started, self._chat(task, started))
        return await self._classified(task, started, self._responses(task, started))

    async def stream(self, task: LLMTask[M], on_delta: DeltaSink) -> Completion[M]:
        """`run`, streamed (`stream=True` on either API): the text of a plain-text answer, or
        of the structured answer's `stream_field`, passed to `on_delta` as it arrives."""
        emit: DeltaSink
        if task.text_field is not None:
            emit = TrimmedDeltas(on_delta)
        elif task.stream_field is not None:
            emit = JsonFieldDeltas(task.stream_field, on_delta)
        else:
            return await self.run(task)
        started = time.perf_counter()
        if self.api == "chat":
            return await self._classified(task, started, self._chat_stream(task, started, emit))
        return await self._classified(task, started, self._responses_stream(task, started, emit))

    async def _classified(
        self, task: LLMTask[M], started: float, call: Coroutine[Any, Any, Completion[M]]
    ) -> Completion[M]:
        """Await `call`, turning whatever it raises into a classified ProviderError."""
        try:
            return await call
        except ProviderError as exc:
            raise _storable_message(exc, task) from exc.__cause__
        except Exception as exc:
            usage = self._usage(started, request_id=getattr(exc, "request_id", None))
            mapped = classify(exc, secret=self._secret, usage=usage, timeout=self.timeout)
            if mapped is None:
                raise
            raise _storable_message(mapped, task) from exc

    async def _responses(self, task: LLMTask[M], started: float) -> Completion[M]:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "instructions": task.instructions,
            "input": [{"role": "user", "content": task.input}],
            "max_output_tokens": self.max_output_tokens,
            "store": False,  # customer text is not kept on OpenAI's side
        }
        if task.text_field is None:
            kwargs["text_format"] = task.output
        if is_reasoning_model(self._model):
            kwargs["reasoning"] = {"effort": self.reasoning_effort}
        raw = await self.client.responses.with_raw_response.parse(**kwargs)
        body = _json(raw.text)
        request_id = raw.request_id or _str(body.get("id"))
        model = _str(body.get("model")) or self._model
        usage = self._usage(started, request_id=request_id, model=model, tokens=_responses_tokens(body))
        self._check_responses_body(body, usage)
        try:
            parsed = raw.parse()
        except (ValidationError, ValueError) as exc:
            raise self._bad_output(task, exc, usage) from exc
        if task.text_field is not None:
            return self._text_completion(task, parsed.output_text, usage)
        return self._structured_completion(task, parsed.output_parsed, usage)

    def _check_responses_body(self, body: dict[str, Any], usage: Usage) -> None:
        """Raise for an answer that is incomplete, failed or refused (Responses API)."""
        status = body.get("status")
        if status == "incomplete":
            reason = (body.get("incomplete_details") or {}).get("reason") or "unknown reason"
            if reason == "content_filter":
                # The same input meets the same filter: fatal, as `finish_reason` is on Chat.
                raise FatalProviderError("OpenAI refused the request: content filter", usage=usage)
            raise RetryableProviderError(f"OpenAI answer incomplete ({reason})", usage=usage)
        if status == "failed":
            error = body.get("error") or {}
            raise RetryableProviderError(
                f"OpenAI response failed: {redact(str(error.get('message') or error), self._secret)}",
                usage=usage,
            )
        refusal = _responses_refusal(body)
        if refusal is not None:
            raise FatalProviderError(f"OpenAI refused the request: {refusal[:300]}", usage=usage)

    async def _responses_stream(self, task: LLMTask[M], started: float, emit: DeltaSink) -> Completion[M]:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "instructions": task.instructions,
            "input": [{"role": "user", "content": task.input}],
            "max_output_tokens": self.max_output_tokens,
            "store": False,
            "stream": True,
        }
        if task.text_field is None:
            kwargs["text"] = {"format": {"type": "json_schema", **_json_schema(task.output)}}
        if is_reasoning_model(self._model):
            kwargs["reasoning"] = {"effort": self.reasoning_effort}
        parts: list[str] = []
        final: dict[str, Any] | None = None
        async with self.client.responses.with_streaming_response.create(**kwargs) as response:
            request_id = response.request_id
            async for event in _sse_data(response):
                kind = event.get("type")
                if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
                    parts.append(event["delta"])
                    emit(event["delta"])
                elif kind in ("response.completed", "response.incomplete", "response.failed"):
                    final = event.get("response") if isinstance(event.get("response"), dict) else {}
                elif kind == "error":
                    message = redact(str(event.get("message") or event), self._secret)
                    raise RetryableProviderError(f"OpenAI stream failed: {message}"[:500])
        body = final or {}
        usage = self._usage(
            started,
            request_id=request_id or _str(body.get("id")),
            model=_str(body.get("model")),
            tokens=_responses_tokens(body),
        )
        if final is None:
            raise RetryableProviderError("OpenAI stream ended before the answer did", usage=usage)
        self._check_responses_body(body, usage)
        return self._streamed_completion(task, "".join(parts), usage)

    async def _chat_stream(self, task: LLMTask[M], started: float, emit: DeltaSink) -> Completion[M]:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": task.instructions},
                {"role": "user", "content": task.input},
            ],
            "max_completion_tokens": self.max_output_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if task.text_field is None:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": _json_schema(task.output)}
        if is_reasoning_model(self._model):
            kwargs["reasoning_effort"] = self.reasoning_effort
        parts: list[str] = []
        refusal: list[str] = []
        finish_reason: str | None = None
        body: dict[str, Any] = {}
        async with self.client.chat.completions.with_streaming_response.create(**kwargs) as response:
            request_id = response.request_id
            async for chunk in _sse_data(response):
                body.setdefault("id", chunk.get("id"))
                body["model"] = chunk.get("model") or body.get("model")
                if isinstance(chunk.get("usage"), dict):
                    body["usage"] = chunk["usage"]
                for choice in (chunk.get("choices") or [])[:1]:
                    delta = choice.get("delta") or {}
                    if isinstance(delta.get("content"), str) and delta["content"]:
                        parts.append(delta["content"])
                        emit(delta["content"])
                    if isinstance(delta.get("refusal"), str):
                        refusal.append(delta["refusal"])
                    finish_reason = choice.get("finish_reason") or finish_reason
        usage = self._usage(
            started,
            request_id=request_id or _str(body.get("id")),
            model=_str(body.get("model")),
            tokens=_chat_tokens(body),
        )
        self._check_chat_finish(finish_reason, "".join(refusal) or None, usage)
        if finish_reason is None:
            raise RetryableProviderError("OpenAI stream ended before the answer did", usage=usage)
        return self._streamed_completion(task, "".join(parts), usage)

    async def _chat(self, task: LLMTask[M], started: float) -> Completion[M]:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": task.instructions},
                {"role": "user", "content": task.input},
            ],
            "max_completion_tokens": self.max_output_tokens,
        }
        if task.text_field is None:
            kwargs["response_format"] = task.output
        if is_reasoning_model(self._model):
            kwargs["reasoning_effort"] = self.reasoning_effort
        raw = await self.client.chat.completions.with_raw_response.parse(**kwargs)
        body = _json(raw.text)
        request_id = raw.request_id or _str(body.get("id"))
        model = _str(body.get("model")) or self._model
        usage = self._usage(started, request_id=request_id, model=model, tokens=_chat_tokens(body))
        choices = body.get("choices") or []
        if not choices:
            raise RetryableProviderError("OpenAI answer had no choices", usage=usage)
        self._check_chat_finish(
            choices[0].get("finish_reason"), (choices[0].get("message") or {}).get("refusal"), usage
        )
        try:
            parsed = raw.parse()
        except (ValidationError, ValueError) as exc:
            raise self._bad_output(task, exc, usage) from exc
        message = parsed.choices[0].message
        if task.text_field is not None:
            return self._text_completion(task, message.content or "", usage)
        return self._structured_completion(task, message.parsed, usage)

    def _check_chat_finish(self, finish_reason: object, refusal: object, usage: Usage) -> None:
        """Raise for an answer cut short, filtered or refused (Chat Completions)."""
        if finish_reason == "length":
            raise RetryableProviderError(
                "OpenAI answer incomplete (finish_reason=length: the output token cap was reached)",
                usage=usage,
            )
        if finish_reason == "content_filter":
            raise FatalProviderError("OpenAI refused the request: content filter", usage=usage)
        if refusal:
            raise FatalProviderError(f"OpenAI refused the request: {str(refusal)[:300]}", usage=usage)

    # -- shaping --------------------------------------------------------------------------
    def _streamed_completion(self, task: LLMTask[M], text: str, usage: Usage) -> Completion[M]:
        """The answer a stream's text makes: plain text, or the structured answer it encodes."""
        if task.text_field is not None:
            return self._text_completion(task, text, usage)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise self._bad_output(task, exc, usage) from exc
        return self._structured_completion(task, data, usage)

    def _text_completion(self, task: LLMTask[M], text: str, usage: Usage) -> Completion[M]:
        assert task.text_field is not None
        text = text.strip()
        if not text:
            raise RetryableProviderError("OpenAI returned an empty answer", usage=usage)
        if (found := first_unstorable(text)) is not None:
            raise self._unstorable(*found, usage)
        try:
            output = task.output.model_validate({task.text_field: text})
        except ValidationError as exc:
            raise self._bad_output(task, exc, usage) from exc
        return Completion(output=output, usage=usage)

    def _structured_completion(self, task: LLMTask[M], parsed: object, usage: Usage) -> Completion[M]:
        if parsed is None:
            raise RetryableProviderError("OpenAI returned no structured answer", usage=usage)
        try:
            # Validate again with our model: strict JSON schema drops some constraints (lengths).
            data = parsed.model_dump(mode="json") if isinstance(parsed, BaseModel) else parsed
            output = task.output.model_validate(data)
        except ValidationError as exc:
            raise self._bad_output(task, exc, usage) from exc
        found = first_unstorable(output.model_dump(mode="json"))
        if found is not None:
            raise self._unstorable(*found, usage)
        return Completion(output=output, usage=usage)

    def _unstorable(self, char: str, where: str, usage: Usage) -> RetryableProviderError:
        # Named by code point, never quoted: the message is stored and logged as it is.
        return RetryableProviderError(
            f"OpenAI answer holds U+{ord(char):04X}, which PostgreSQL cannot store, at {where}"[:500],
            usage=usage,
        )

    def _bad_output(self, task: LLMTask[Any], exc: Exception, usage: Usage) -> RetryableProviderError:
        if isinstance(exc, ValidationError):
            where = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:3]
            )
        else:
            where = type(exc).__name__
        return RetryableProviderError(
            f"OpenAI answer did not fit {task.output.__name__}: {where}"[:500], usage=usage
        )

    def _usage(
        self,
        started: float,
        *,
        request_id: str | None = None,
        model: str | None = None,
        tokens: tuple[int | None, int | None, int | None] = (None, None, None),
    ) -> Usage:
        inp, out, reasoning = tokens
        model = model or self._model
        return Usage(
            provider=NAME,
            model=model,
            request_id=request_id,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            input_tokens=inp,
            output_tokens=out,
            reasoning_tokens=reasoning,
            cost_usd=self.prices.cost(model, inp, out),
        )


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise RetryableProviderError("OpenAI returned a body that is not JSON") from None
    if not isinstance(value, dict):
        raise RetryableProviderError("OpenAI returned a body that is not a JSON object")
    return value


async def _sse_data(response: AsyncAPIResponse[Any]) -> AsyncIterator[dict[str, Any]]:
    """The JSON `data` of each Server-Sent Event of an OpenAI stream, until `[DONE]` or the
    end. Read as plain JSON: building the SDK's typed event models cost a second or two of
    blocked event loop the first time, and CPU for every piece after."""
    lines: list[str] = []
    async for line in response.iter_lines():
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
            continue
        if line or not lines:
            continue  # `event:` names, comments, blank lines between events
        text = "\n".join(lines)
        lines = []
        if text == "[DONE]":
            return
        yield _json(text)
    if lines and (text := "\n".join(lines)) != "[DONE]":
        yield _json(text)


def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`{name, schema, strict}`: the strict JSON schema the SDK's parse helpers send for `model`."""
    param = cast("dict[str, Any]", type_to_response_format_param(model))
    return dict(param["json_schema"])


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _responses_tokens(body: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    usage = body.get("usage") or {}
    details = usage.get("output_tokens_details") or {}
    return (
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _int(details.get("reasoning_tokens")),
    )


def _chat_tokens(body: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    usage = body.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    return (
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
        _int(details.get("reasoning_tokens")),
    )


def _responses_refusal(body: dict[str, Any]) -> str | None:
    for item in body.get("output") or []:
        if item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if part.get("type") == "refusal":
                return str(part.get("refusal") or "refused")
    return None


__all__ = ["NAME", "OpenAIProvider", "is_reasoning_model"]


def _storable_message(error: ProviderError, task: LLMTask[Any]) -> ProviderError:
    """The same error with any quote of the task's customer text cut from its message, and any
    character PostgreSQL cannot store replaced (a refusal or a server message may carry one):
    the message is written to the attempt's row."""
    message = str(error)
    cleaned = storable_text(redact_input(message, task.input))
    if cleaned != message:
        error.args = (cleaned, *error.args[1:])
    return error
