"""The fake server's answers fit every job type's output schema, as OpenAI's strict mode would."""

from __future__ import annotations

import json
from importlib import import_module

import pytest
from openai.lib._pydantic import to_strict_json_schema

from aijobs.jobs import JOB_TYPE_NAMES, get_job_type
from aijobs.providers.fake_openai_bodies import chat_body, instance, responses_body


@pytest.mark.parametrize("name", JOB_TYPE_NAMES)
def test_generated_answers_validate(name: str) -> None:
    kind = get_job_type(name)
    task = import_module(f"aijobs.jobs.{name}").build_task(kind.parse(kind.example))
    schema = to_strict_json_schema(task.output)
    task.output.model_validate(instance(schema))
    body = {"model": "gpt-5-nano", "text": {"format": {"type": "json_schema", "schema": schema}}}
    text = responses_body(body)["output"][-1]["content"][0]["text"]
    task.output.model_validate_json(text)


def test_schema_features() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 3, "maximum": 9},
            "x": {"type": "number", "exclusiveMinimum": 0},
            "tag": {"$ref": "#/$defs/Tag"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 12}]},
            "none": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
        },
        "$defs": {"Tag": {"enum": ["a", "b"]}},
    }
    value = instance(schema)
    assert value["n"] == 6 and value["x"] == 1.0 and value["tag"] == "a"
    assert len(value["maybe"]) >= 12 and value["none"] == []


def test_incomplete_bodies() -> None:
    body = {"model": "gpt-5-nano", "reasoning": {"effort": "minimal"}, "max_output_tokens": 16}
    out = responses_body(body, incomplete=True)
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["usage"]["output_tokens"] == 16
    chat = chat_body({"model": "gpt-5-nano", "messages": []}, incomplete=True)
    assert chat["choices"][0]["finish_reason"] == "length"
    assert json.dumps(chat)


def test_content_filtered_bodies() -> None:
    filtered = {"incomplete": True, "incomplete_reason": "content_filter"}
    out = responses_body({"model": "gpt-5-nano"}, **filtered)
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "content_filter"}
    chat = chat_body({"model": "gpt-5-nano", "messages": []}, **filtered)
    assert chat["choices"][0]["finish_reason"] == "content_filter"
