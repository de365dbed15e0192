"""The provider seam: what a job handler asks of an LLM back end, and what can go wrong.

A handler builds an `LLMTask` (instructions kept apart from the user's data, and the pydantic
model the answer must fit) and awaits `Provider.run`. The queue — not the provider — decides
about retries, so providers only *classify* failures into the exceptions below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

#: What PostgreSQL refuses in text and jsonb: NUL, and (not being UTF-8) any surrogate code
#: point; in a Python str a surrogate is always unpaired, a paired one decodes to one character.
#: Answers and error texts come from models and servers, so both are checked against it.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` with what PostgreSQL would refuse (NUL, lone surrogates) replaced by U+FFFD."""
    if UNSTORABLE.search(text) is None:
        return text
    return UNSTORABLE.sub("\ufffd", text)


def first_unstorable(value: object, where: str = "answer") -> tuple[str, str] | None:
    """The first character PostgreSQL cannot store in any string (key or value) of a JSON-shaped
    value, and where it is ("answer.reasons.0"); None when every string is storable. Answers
    are small (a few dozen strings), so this walk costs microseconds."""
    if isinstance(value, str):
        bad = UNSTORABLE.search(value)
        return (bad.group(), where) if bad is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_unstorable(key, where) or first_unstorable(item, f"{where}.{key}")
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = first_unstorable(item, f"{where}.{index}")
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class LLMTask(Generic[M]):
    """One request to a language model.

    `instructions` are ours (developer/system text); `input` is the user's data (a review, a
    prompt) and is only ever sent as the user message, never spliced into the instructions.
    `payload` is the validated job payload, for providers that work from fields (offline rules).
    When `text_field` is set the model is asked for plain text, stored into that field of `output`.
    """

    kind: str
    instructions: str
    input: str
    output: type[M]
    payload: BaseModel
    text_field: str | None = None


@dataclass(frozen=True)
class Usage:
    """What one provider call cost: recorded on the attempt row."""

    provider: str
    model: str | None = None
    request_id: str | None = None
    latency_ms: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: Decimal | None = None


@dataclass(frozen=True)
class Completion(Generic[M]):
    """A validated answer and its usage."""

    output: M
    usage: Usage
    extra: dict[str, object] = field(default_factory=dict)


class ProviderError(Exception):
    """Base of every classified provider failure. `retryable` tells the queue what to do."""

    retryable: bool = True

    def __init__(self, message: str, *, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class RetryableProviderError(ProviderError):
    """5xx, timeouts, connection errors, an incomplete answer: try again after backoff."""

    retryable = True


class FatalProviderError(ProviderError):
    """400/401/403/404 (bad key, unknown model, refused input): retrying cannot help."""

    retryable = False


class RateLimitedError(ProviderError):
    """429: come back after `retry_after` seconds; this does not burn an attempt."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float, usage: Usage | None = None) -> None:
        super().__init__(message, usage=usage)
        self.retry_after = retry_after


class Provider(Protocol):
    """An LLM back end. Implementations: `offline.OfflineProvider`, `openai.OpenAIProvider`."""

    name: str
    model: str | None

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        """Answer `task` with an instance of `task.output`, or raise a ProviderError."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


#: Receives the text of an answer as the model writes it, piece by piece. Called from the
#: provider's read loop: it must return at once (buffer, never wait).
DeltaSink = Callable[[str], None]


@runtime_checkable
class StreamingProvider(Protocol):
    """A provider that can also stream a plain-text answer (`LLMTask.text_field` set) as the
    model writes it. Structured answers, and providers without `stream`, use `run`."""

    async def stream(self, task: LLMTask[M], on_delta: DeltaSink) -> Completion[M]:
        """Answer as `run` does, passing the text to `on_delta` as it arrives; the pieces
        joined are exactly the stored text field."""
        ...


class TrimmedDeltas:
    """Passes pieces on so that, joined, they are the answer's text stripped as it is stored:
    leading whitespace is dropped, trailing whitespace held until more text follows it."""

    def __init__(self, sink: DeltaSink) -> None:
        self.sink = sink
        self.started = False
        self.held = ""

    def __call__(self, delta: str) -> None:
        if not self.started:
            delta = delta.lstrip()
            if not delta:
                return
            self.started = True
        text = self.held + delta
        body = text.rstrip()
        self.held = text[len(body) :]
        if body:
            self.sink(body)
