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
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

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
    value, and where it is ("answer.reasons.0"); None when every string is storable. Every
    answer is checked, and nearly all are clean: the path is only built once one is not."""
    if not _holds_unstorable(value):
        return None
    return _locate(value, where)


def _holds_unstorable(value: object) -> bool:
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_unstorable(k) or _holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_unstorable(item) for item in value)
    return False


def _locate(value: object, where: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        bad = UNSTORABLE.search(value)
        return (bad.group(), where) if bad is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _locate(key, where) or _locate(item, f"{where}.{key}")
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _locate(item, f"{where}.{index}")
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class LLMTask(Generic[M]):
    """One request to a language model.

    `instructions` are ours (developer/system text); `input` is the user's data (a review, a
    prompt) and is only ever sent as the user message, never spliced into the instructions.
    `payload` is the validated job payload. When `text_field` is set the model is asked for
    plain text, stored into that field of `output`. `offline` is the job type's own rule for the
    offline provider (the answer as a dict, a model instance, or the text for `text_field`); the
    job module supplies it, so adding a type never touches the providers.
    `stream_field` names a string field of a structured answer whose text may be streamed as
    the model writes it (a plain-text answer streams whole).
    """

    kind: str
    instructions: str
    input: str
    output: type[M]
    payload: BaseModel
    text_field: str | None = None
    offline: Callable[[], Any] | None = None
    stream_field: str | None = None


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
    """400/422, a refusal, a content filter: this job's request is refused, so retrying it
    cannot help."""

    retryable = False


class MisconfiguredProviderError(ProviderError):
    """The provider, not the job, is at fault: a wrong key (401/403), an unknown model (404),
    nothing answering at the base URL. Every job would fail alike until an operator fixes it,
    so the worker pauses the provider for every worker and hands the job back, its attempt
    given back; a probe call lifts the pause once it is answered."""

    retryable = True


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


@runtime_checkable
class ProbingProvider(Protocol):
    """A provider that can tell whether its configuration works now, without a job: the
    worker probes a paused provider with it (`MisconfiguredProviderError` while it is still
    wrong; anything else, even another error, means the provider answers)."""

    async def probe(self) -> None:
        """Make the smallest call the provider's configuration allows."""
        ...


#: Receives the text of an answer as the model writes it, piece by piece. Called from the
#: provider's read loop: it must return at once (buffer, never wait).
DeltaSink = Callable[[str], None]


@runtime_checkable
class StreamingProvider(Protocol):
    """A provider that can also stream an answer's text as the model writes it: a plain-text
    answer (`LLMTask.text_field`), or one string field of a structured one
    (`LLMTask.stream_field`). Other tasks, and providers without `stream`, use `run`."""

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


class JsonFieldDeltas:
    """Passes on, as the raw JSON text of an object streams in, the decoded text of one of its
    top-level string fields: joined, the pieces are exactly that field's value once the whole
    text is parsed (escapes decoded, a surrogate pair split across pieces joined)."""

    _ESCAPES: ClassVar[dict[str, str]] = {
        '"': '"',
        "\\": "\\",
        "/": "/",
        "b": "\b",
        "f": "\f",
        "n": "\n",
        "r": "\r",
        "t": "\t",
    }

    def __init__(self, field: str, sink: DeltaSink) -> None:
        self.field = field
        self.sink = sink
        self.depth = 0
        self.in_string = False
        self.escape: str | None = None  # what followed a backslash so far
        self.role = "other"  # of the string being read: "key", "target" or "other"
        self.key: list[str] = []
        self.last_key: str | None = None
        self.awaiting_key = False
        self.awaiting_value = False
        self.high: str | None = None  # a high surrogate waiting for its low half

    def __call__(self, text: str) -> None:
        out: list[str] = []
        for ch in text:
            if self.in_string:
                self._in_string(ch, out)
            elif ch == '"':
                self.in_string = True
                if self.depth == 1 and self.awaiting_key:
                    self.role, self.key = "key", []
                elif self.depth == 1 and self.awaiting_value and self.last_key == self.field:
                    self.role = "target"
                else:
                    self.role = "other"
                self.awaiting_key = self.awaiting_value = False
            elif ch in "{[":
                self.depth += 1
                self.awaiting_key = ch == "{" and self.depth == 1
                self.awaiting_value = False
            elif ch in "}]":
                self.depth -= 1
            elif self.depth == 1 and ch == ",":
                self.awaiting_key = True
            elif self.depth == 1 and ch == ":":
                self.awaiting_value = True
            elif not ch.isspace():
                self.awaiting_value = False
        if self.role != "target" or not self.in_string:
            self._release_high(out)
        if out:
            self.sink("".join(out))

    def _in_string(self, ch: str, out: list[str]) -> None:
        if self.escape is not None:
            self.escape += ch
            if self.escape[0] == "u":
                if len(self.escape) < 5:
                    return
                try:
                    decoded = chr(int(self.escape[1:], 16))
                except ValueError:
                    decoded = ""  # not JSON: the parse at the end refuses the answer
            else:
                decoded = self._ESCAPES.get(self.escape, "")
            self.escape = None
            self._char(decoded, out)
        elif ch == "\\":
            self.escape = ""
        elif ch == '"':
            self.in_string = False
            if self.role == "key":
                self.last_key = "".join(self.key)
            elif self.role == "target":
                self._release_high(out)
        else:
            self._char(ch, out)

    def _char(self, ch: str, out: list[str]) -> None:
        if not ch:
            return
        if self.role == "key":
            self.key.append(ch)
            return
        if self.role != "target":
            return
        code = ord(ch)
        if 0xDC00 <= code <= 0xDFFF and self.high is not None:
            high = ord(self.high)
            self.high = None
            out.append(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)))
            return
        self._release_high(out)
        if 0xD800 <= code <= 0xDBFF:
            self.high = ch
        else:
            out.append(ch)

    def _release_high(self, out: list[str]) -> None:
        if self.high is not None:
            out.append(self.high)
            self.high = None
