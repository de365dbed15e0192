"""clients/typescript: its types are the current spec's, and its tests pass against a real
API and worker.

The API runs under uvicorn on 127.0.0.1 over the test's own database, a worker (offline
provider) in this event loop; `npm test` (Node's test runner) gets the URL, the JWT secret
and the service key in its environment, and makes its own users through the admin API.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from aijobs.api.openapi import dump, spec
from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.offline import OfflineProvider
from tests.support.api_server import JWT_SECRET, SERVICE_KEY, ApiServer, api_settings
from tests.support.node import CLIENT, require_npm_project, run
from tests.support.workers import running_worker

# Builds clients/typescript/dist, as the Next.js example's test does: never both at once.
pytestmark = pytest.mark.xdist_group("typescript-client")

MAX_IN_FLIGHT = 5
MAX_STREAMS = 2


async def test_committed_types_are_generated_from_the_current_spec() -> None:
    require_npm_project(CLIENT)
    committed = (CLIENT / "openapi.json").read_text(encoding="utf-8")
    assert committed == dump(spec()), (
        "clients/typescript/openapi.json differs from the API's spec: run `make client-types` and commit"
    )
    code, output = await run("node", "scripts/generate.mjs", "--check", cwd=CLIENT, timeout=120)
    assert code == 0, output


async def conflict_on(db_url: str, text: str) -> None:
    """Make the database roll back (SQLSTATE 40001, as a serialization failure does) any job
    created with `text` as its payload's text: a real 503 from the real API."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "select coalesce(to_regclass('aijobs.jobs'), to_regclass('public.jobs'))::text"
        )
        row = await cur.fetchone()
        assert row is not None and row[0], "no jobs table"
        await conn.execute(
            sql.SQL(
                "create function public.test_conflict() returns trigger language plpgsql as $$ begin"
                " if new.payload->>'text' = {text} then"
                " raise exception 'injected conflict' using errcode = 'serialization_failure';"
                " end if; return new; end $$"
            ).format(text=sql.Literal(text))
        )
        await conn.execute(
            sql.SQL(
                "create trigger test_conflict before insert on {} for each row"
                " execute function public.test_conflict()"
            ).format(sql.SQL(row[0]))
        )


async def test_client_against_the_real_api_and_worker(
    settings: Settings, store: Store, db_url: str, artifacts_dir: Path
) -> None:
    require_npm_project(CLIENT)
    conflict_text = f"conflict-{uuid.uuid4()}"
    await conflict_on(db_url, conflict_text)
    server = ApiServer(
        api_settings(settings, max_jobs_in_flight_per_user=MAX_IN_FLIGHT, max_streams_per_user=MAX_STREAMS)
    ).start()
    try:
        async with running_worker(settings, store, OfflineProvider()):
            code, output = await run(
                "npm",
                "test",
                cwd=CLIENT,
                env={
                    "AIJOBS_URL": server.url,
                    "AIJOBS_JWT_SECRET": JWT_SECRET,
                    "AIJOBS_SERVICE_KEY": SERVICE_KEY,
                    "AIJOBS_CONFLICT_TEXT": conflict_text,
                    "AIJOBS_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
                    "AIJOBS_MAX_STREAMS": str(MAX_STREAMS),
                },
            )
    finally:
        server.stop()
    (artifacts_dir / "typescript-client-tests.txt").write_text(output, encoding="utf-8")
    assert code == 0, output
    assert re.search(r"^ℹ fail 0$", output, re.MULTILINE), output
