"""The registered job types in OpenAPI: a request body discriminated by `type`, and result schemas.

The routes validate a creation generically (`JobCreate`, then the type's payload model before
anything is charged), so their errors name fields the same way for every type. The published
schema is precise instead: `JobCreate` becomes a `oneOf` over one model per registered type,
each pairing `type: "<name>"` with that type's payload model, and each type's stored result
(`<Type>JobResult`: provider, model and the output model) is a component, so generated clients
are typed for every type this deployment has, built-in or yours.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model
from pydantic.json_schema import models_json_schema

from aijobs.api.models import JobCreate
from aijobs.jobs import JobType

REF = "#/components/schemas/{model}"


def camel(name: str) -> str:
    """`review_processing` → `ReviewProcessing`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


@functools.cache
def create_model_for(jt: JobType) -> type[BaseModel]:
    """`JobCreate` with `type` fixed to this type's name and `payload` its payload model."""
    examples: list[JsonValue] = [{"type": jt.name, "payload": jt.example}] if jt.example is not None else []
    # The examples are the type's own, not JobCreate's: a base with that config, then the fields.
    config = ConfigDict(**{**JobCreate.model_config, "json_schema_extra": {"examples": examples}})
    base = type(f"{camel(jt.name)}JobCreateBase", (JobCreate,), {"model_config": config})
    model: type[BaseModel] = create_model(
        f"{camel(jt.name)}JobCreate",
        __base__=base,
        __doc__=f"Create a `{jt.name}` job ({jt.cost} credits). {jt.description}".strip(),
        type=(Literal[jt.name], Field(description="The job type.")),  # type: ignore[arg-type]
        payload=(jt.payload_model, Field(description=f"{jt.payload_model.__name__}.")),
    )
    return model


@functools.cache
def result_model_for(jt: JobType) -> type[BaseModel]:
    """What a completed job of this type holds in `result`."""
    output: Any = jt.output_model if jt.output_model is not None else Any
    model: type[BaseModel] = create_model(
        f"{camel(jt.name)}JobResult",
        __config__=ConfigDict(extra="allow"),
        __doc__=f"The result of a completed `{jt.name}` job.",
        provider=(str | None, Field(None, description="The provider that answered (LLM types).")),
        model=(str | None, Field(None, description="The model that answered (LLM types).")),
        output=(output, Field(description="The handler's output.")),
    )
    return model


def result_schema(jt: JobType) -> dict[str, Any]:
    """The standalone JSON schema of a type's result (for GET /api/job-types)."""
    return result_model_for(jt).model_json_schema()


def add_job_types(schema: dict[str, Any], types: Mapping[str, JobType]) -> None:
    """Rewrite `schema` (an OpenAPI document) so `JobCreate` is the union over `types`."""
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    models = [m for jt in types.values() for m in (create_model_for(jt), result_model_for(jt))]
    keys, generated = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    renamed = _merge(components, generated.get("$defs", {}))
    mapping = {}
    for jt in types.values():
        name = keys[(create_model_for(jt), "validation")]["$ref"].rsplit("/", 1)[1]
        mapping[jt.name] = REF.format(model=renamed.get(name, name))
    components["JobCreate"] = {
        "title": "JobCreate",
        "description": "A job to create: its `type` selects the payload's schema.",
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }


def _merge(components: dict[str, Any], defs: dict[str, Any]) -> dict[str, str]:
    """Add `defs` to `components`; a name already taken by a different schema (a payload model
    of yours called `Job`, say) is added under `<name>_<n>` instead. Returns the renames."""
    renamed: dict[str, str] = {}
    for name, body in defs.items():
        if name in components and components[name] != body:
            n = 2
            while f"{name}_{n}" in components or f"{name}_{n}" in defs:
                n += 1
            renamed[name] = f"{name}_{n}"
    for name, body in defs.items():
        target = renamed.get(name, name)
        text = json.dumps(body)
        for old, new in renamed.items():  # whole quoted refs only: `Foo` is not `FooBar`
            text = text.replace(json.dumps(REF.format(model=old)), json.dumps(REF.format(model=new)))
        components.setdefault(target, json.loads(text))
    return renamed
