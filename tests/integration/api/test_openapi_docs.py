"""What client generators read from /openapi.json, and /docs served without any CDN."""

from __future__ import annotations

import re

from aijobs.api.openapi import dump, spec


async def test_every_operation_names_the_credential_it_takes(client) -> None:
    served = (await client.get("/openapi.json")).json()
    schemes = served["components"]["securitySchemes"]
    assert schemes["BearerJWT"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["BearerJWT"]["description"],
    }
    assert schemes["ServiceKey"]["scheme"] == "bearer"
    assert schemes["ServiceKeyHeader"] == {**schemes["ServiceKeyHeader"], "in": "header", "name": "apikey"}
    ops = {(m, p): op for p, item in served["paths"].items() for m, op in item.items()}
    assert ops[("post", "/api/jobs")]["security"] == [{"BearerJWT": []}]
    assert ops[("get", "/api/jobs/{job_id}/events")]["security"] == [{"BearerJWT": []}]
    assert ops[("get", "/api/me/ledger")]["security"] == [{"BearerJWT": []}]
    # Any one of them (a list of requirements is "or").
    assert ops[("post", "/api/admin/credits")]["security"] == [
        {"BearerJWT": []},
        {"ServiceKey": []},
        {"ServiceKeyHeader": []},
    ]
    for public in (("get", "/api/job-types"), ("get", "/healthz"), ("get", "/readyz")):
        assert "security" not in ops[public], public
    # Generators name methods after these: the handlers' names, not create_job_api_jobs_post.
    assert ops[("post", "/api/jobs")]["operationId"] == "create_job"
    assert ops[("get", "/api/jobs/{job_id}/events")]["operationId"] == "job_events"


async def test_problems_have_examples_and_retry_after(client) -> None:
    served = (await client.get("/openapi.json")).json()
    create = served["paths"]["/api/jobs"]["post"]["responses"]
    payment = create["402"]["content"]["application/problem+json"]["example"]
    assert payment["balance"] < payment["cost"] and payment["code"] == "insufficient_credits"
    assert create["422"]["content"]["application/problem+json"]["example"]["errors"][0]["field"]
    for status in ("429", "503"):
        assert create[status]["headers"]["Retry-After"]["schema"] == {"type": "integer"}


async def test_spec_without_a_server_is_the_served_one(client) -> None:
    served = (await client.get("/openapi.json")).json()
    assert dump(spec()) == dump(served)


async def test_docs_pages_load_their_assets_from_this_server(client) -> None:
    assert (await client.get("/redoc")).status_code == 404  # not served: its bundle calls a CDN
    for page in ("/docs",):
        html = (await client.get(page)).text
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
        assert urls, page
        for url in urls:
            assert url.startswith("/"), (page, url)  # nothing from another host
            if url != "/openapi.json":
                asset = await client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
