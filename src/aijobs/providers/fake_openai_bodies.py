"""Bodies the fake OpenAI server answers with: shaped like OpenAI's, filled from the request.

`instance(schema)` builds a minimal value that satisfies a JSON schema (the structured-output
schema the SDK sent), so any pydantic output model round-trips without the fake knowing it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

PLAIN_TEXT = (
    "Thank you for taking the time to share your experience with us. We appreciate your "
    "feedback and hope to welcome you again soon. (fake-openai)"
)


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def instance(schema: dict[str, Any], root: dict[str, Any] | None = None, name: str = "value") -> Any:
    """A small value valid under `schema` ($ref/$defs, anyOf, enum, const, bounds, lengths)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        return instance(target, root, name)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return instance(options[0], root, name)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        return {key: instance(sub, root, key) for key, sub in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [instance(schema.get("items", {}), root, name) for _ in range(count)]
    if kind == "string":
        text = f"fake {name.replace('_', ' ')}"
        text = text.ljust(int(schema.get("minLength", 0)), ".")
        return text[: int(schema["maxLength"])] if "maxLength" in schema else text
    if kind in ("number", "integer"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _number(schema: dict[str, Any], *, integer: bool) -> float | int:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if lo is not None and hi is not None:
        value = (lo + hi) / 2
    elif lo is not None:
        value = lo + 1
    elif hi is not None:
        value = min(0, hi - 1)
    else:
        value = 0
    return int(value) if integer else float(value)


def answer_text(schema: dict[str, Any] | None) -> str:
    """What the model 'says': JSON for a schema, prose otherwise."""
    if schema is None:
        return PLAIN_TEXT
    return json.dumps(instance(schema), ensure_ascii=False)


def count_tokens(value: object) -> int:
    """A rough count (four characters a token), enough for usage figures."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return max(len(text) // 4, 1)


def response_model(requested: object) -> str:
    """OpenAI answers with a dated snapshot of the family asked for."""
    model = requested if isinstance(requested, str) and requested else "gpt-5-nano"
    return f"{model}-2025-08-07" if model.startswith("gpt-") else model


def responses_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("text") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None


def chat_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None


def responses_body(
    body: dict[str, Any],
    *,
    incomplete: bool = False,
    incomplete_reason: str = "max_output_tokens",
    refusal: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    schema = responses_schema(body)
    out_text = text if text is not None else answer_text(schema)
    reasoning = 64 if body.get("reasoning") else 0
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append({"id": new_id("rs_"), "type": "reasoning", "summary": []})
    content: list[dict[str, Any]]
    if refusal is not None:
        content = [{"type": "refusal", "refusal": refusal}]
    else:
        shown = out_text[: len(out_text) // 2] if incomplete else out_text
        content = [{"type": "output_text", "text": shown, "annotations": []}]
    if not (incomplete and reasoning):
        output.append(
            {
                "id": new_id("msg_"),
                "type": "message",
                "status": "incomplete" if incomplete else "completed",
                "role": "assistant",
                "content": content,
            }
        )
    inp = count_tokens(body.get("input", "")) + count_tokens(body.get("instructions") or "")
    out = (body.get("max_output_tokens") or 0) if incomplete else count_tokens(out_text) + reasoning
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": incomplete_reason} if incomplete else None,
        "error": None,
        "model": response_model(body.get("model")),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "usage": {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": inp + out,
        },
    }


def chat_body(
    body: dict[str, Any],
    *,
    incomplete: bool = False,
    incomplete_reason: str = "max_output_tokens",
    refusal: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    schema = chat_schema(body)
    out_text = text if text is not None else answer_text(schema)
    reasoning = 64 if body.get("reasoning_effort") else 0
    inp = count_tokens(body.get("messages", []))
    out = count_tokens(out_text) + reasoning
    content = None if refusal is not None else (out_text[: len(out_text) // 2] if incomplete else out_text)
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response_model(body.get("model")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": _chat_finish(incomplete, incomplete_reason),
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def _chat_finish(incomplete: bool, reason: str) -> str:
    if not incomplete:
        return "stop"
    return "content_filter" if reason == "content_filter" else "length"


ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_value", "Invalid request (fake-openai)."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-fak*****-key. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Access denied (fake-openai)."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake-openai). Please try again shortly."),
    500: ("server_error", "server_error", "The server had an error while processing your request."),
    503: (
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
}


def error_body(status: int, code: str | None = None, message: str | None = None) -> dict[str, Any]:
    kind, default_code, default_message = ERRORS.get(status, ("api_error", "error", f"HTTP {status}"))
    return {
        "error": {
            "message": message or default_message,
            "type": kind,
            "param": None,
            "code": code or default_code,
        }
    }


# -- streaming -----------------------------------------------------------------------------------
def pieces(text: str) -> list[str]:
    """`text` in the pieces a model streams it in: each word with the spaces after it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def responses_stream(final: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Responses API's stream events for the answer `final` (a `responses_body`)."""
    sequence = iter(range(1_000_000))
    opening = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    yield {"type": "response.created", "response": opening, "sequence_number": next(sequence)}
    for index, item in enumerate(final["output"]):
        if item["type"] != "message":
            continue
        for part in item["content"]:
            if part["type"] == "refusal":
                yield {
                    "type": "response.refusal.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": part["refusal"],
                    "sequence_number": next(sequence),
                }
                continue
            for piece in pieces(part["text"]):
                yield {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                    "sequence_number": next(sequence),
                }
    ending = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield {"type": ending, "response": final, "sequence_number": next(sequence)}


def chat_stream(final: dict[str, Any], *, include_usage: bool) -> Iterator[dict[str, Any]]:
    """Chat Completions' stream chunks for the answer `final` (a `chat_body`)."""
    head = {k: final[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = final["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""})
    if message.get("refusal"):
        yield chunk({"refusal": message["refusal"]})
    for piece in pieces(message.get("content") or ""):
        yield chunk({"content": piece})
    yield chunk({}, choice["finish_reason"])
    if include_usage:
        yield {**head, "choices": [], "usage": final["usage"]}
