"""The OpenAPI document describes every registered job type: `JobCreate` is a union
discriminated by `type`, each type's result is a component, and every reference resolves,
even when a payload model of yours shares a name with one of the API's own models."""

from __future__ import annotations

from typing import Any

from aijobs.api.app import create_app
from aijobs.config import load_settings
from aijobs.jobs import JobContext, Output, Payload, job_type, registered


class Job(Payload):  # the same name as the API's own `Job` response model
    sku: str


class Shipped(Output):
    tracking: str


@job_type("ship", cost=1, payload=Job, output=Shipped)
async def ship(payload: Job, ctx: JobContext) -> Shipped:
    return Shipped(tracking=payload.sku)


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def spec() -> dict[str, Any]:
    app = create_app(load_settings(database_url="postgresql://unused/unused", _env_file=None))
    return app.openapi()


def test_job_create_is_a_union_discriminated_by_type_over_every_type() -> None:
    with registered(ship) as types:
        document = spec()
    schemas = document["components"]["schemas"]
    union = schemas["JobCreate"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == set(types)
    assert [o["$ref"] for o in union["oneOf"]] == list(union["discriminator"]["mapping"].values())
    body = document["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobCreate"}
    assert schemas["JobBatchCreate"]["properties"]["jobs"]["items"] == {
        "$ref": "#/components/schemas/JobCreate"
    }

    one = schemas["ShipJobCreate"]
    assert one["properties"]["type"]["const"] == "ship"
    payload_ref = one["properties"]["payload"]["$ref"]
    assert payload_ref != "#/components/schemas/Job", "the API's Job model keeps its name"
    assert schemas[payload_ref.rsplit("/", 1)[1]]["properties"]["sku"]["type"] == "string"
    assert "id" in schemas["Job"]["properties"]  # still the API's own
    result = schemas["ShipJobResult"]
    assert result["properties"]["output"]["$ref"] == "#/components/schemas/Shipped"
    assert result["required"] == ["output"]
    for ref in refs(document):
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_a_type_without_example_has_none() -> None:
    with registered(ship):
        document = spec()
    assert document["components"]["schemas"]["ShipJobCreate"]["examples"] == []
    assert document["components"]["schemas"]["SentimentAnalysisJobCreate"]["examples"][0]["type"] == (
        "sentiment_analysis"
    )
