"""Scenario 12: fuzz the real API with schemathesis against its own published OpenAPI schema.

The API runs under uvicorn on 127.0.0.1 (random port) over the test's own PostgreSQL
database; schemathesis loads `/openapi.json` from it over HTTP and sends generated requests
— valid and invalid — to every operation, signed in as a funded user (admin operations with
the service key). Each response must not be a 5xx and must match what the schema says:
documented status code, content type, headers and body schema; invalid input must not be
accepted. The test ends with the invariant check: fuzzing may create, cancel and retry jobs,
and the credits must still add up.

`make test` runs a bounded pass (FUZZ_EXAMPLES per operation); `make chaos` a longer one.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aijobs.config import Settings
from tests.support.api_server import SERVICE_KEY, ApiServer, api_settings
from tests.support.invariants import assert_invariants_sync

FUZZ_EXAMPLES = 40
CHAOS_EXAMPLES = 300
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: schemathesis.SerializationContext, value: Any) -> bytes:
    """The import's body is text, one job per line: a generated string is sent as is (even
    one no UTF-8 encoder would write), anything else as one JSON line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode() + b"\n"


class Target:
    """The running API, who the fuzzer signs in as, and the database it writes."""

    def __init__(self, server: ApiServer, user: uuid.UUID, db_url: str) -> None:
        self.server = server
        self.user = user
        self.db_url = db_url

    def headers_for(self, path: str) -> dict[str, str]:
        if path.startswith(("/api/admin", "/dashboard", "/metrics")):
            return {"Authorization": f"Bearer {SERVICE_KEY}"}
        return self.server.auth(self.user)


@pytest.fixture
def target(settings: Settings, db_url: str, funded_user: uuid.UUID) -> Iterator[Target]:
    # Webhook URLs are not resolved then: generated host names must not become DNS queries.
    server = ApiServer(
        api_settings(settings, max_jobs_in_flight_per_user=50, webhook_allow_private=True)
    ).start()
    try:
        yield Target(server, funded_user, db_url)
    finally:
        server.stop()


def load_schema(target: Target, examples: int) -> Any:
    schema = schemathesis.openapi.from_url(f"{target.server.url}/openapi.json", timeout=10)
    generation = schema.config.generation
    generation.max_examples = examples
    generation.database = "none"  # no example database written into the tree
    generation.deterministic = False
    # Every call is signed by `headers_for`: the credentials the spec declares (securitySchemes)
    # are not generated, so a negative case never counts on a header the call then carries.
    generation.with_security_parameters = False
    # A negative case can be larger than MAX_BODY_BYTES (a `jobs` array past maxItems, say):
    # 413, decided before parsing, is as much a refusal as a 422.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


def fuzz_every_operation(target: Target, examples: int) -> None:
    """Positive and negative cases for every operation, at most `examples` of each.

    schemathesis' pytest plug-in (`from_fixture`) reads `Function._nodeid`, which pytest 9
    removed, so the operations are driven through its Python API instead: one Hypothesis
    run per operation and mode over `operation.as_strategy`, failures collected and reported
    together so one run shows every broken operation.
    """
    schema = load_schema(target, examples)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
            )
            def run(case: Any) -> None:
                statuses[call(case, target)] += 1

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to negate: no parameters, no body
            except Exception as exc:  # a FailureGroup (or a transport error) per operation
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert operations >= 10, f"only {operations} operations in the schema"
    print(f"schemathesis: {operations} operations, statuses {dict(sorted(statuses.items()))}")
    # The fuzzer really got in: jobs were created, read and listed, not only refused.
    assert statuses[201] and statuses[200] and statuses[422], statuses
    assert not failures, "\n\n".join(failures)


def call(case: Any, target: Target) -> int:
    """Send one case and run the checks on its response; the response's status code."""
    # The SSE stream of an existing job would stay open until the job ends: bound every call.
    response = case.call_and_validate(
        base_url=target.server.url,
        headers=target.headers_for(case.path),
        checks=CHECKS,
        timeout=20,
    )
    return int(response.status_code)


def test_api_matches_its_schema(target: Target) -> None:
    fuzz_every_operation(target, FUZZ_EXAMPLES)
    assert_invariants_sync(target.db_url)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
def test_api_matches_its_schema_long(target: Target) -> None:
    fuzz_every_operation(target, CHAOS_EXAMPLES)
    assert_invariants_sync(target.db_url)
