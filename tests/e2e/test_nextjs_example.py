"""examples/nextjs type-checks against the client as built now (and so against the spec)."""

from __future__ import annotations

import pytest

from tests.support.node import CLIENT, NEXTJS, require_npm_project, run

# Builds clients/typescript/dist, as the client's own test does: never both at once.
pytestmark = pytest.mark.xdist_group("typescript-client")


async def test_nextjs_example_type_checks() -> None:
    require_npm_project(CLIENT)
    require_npm_project(NEXTJS)
    code, output = await run("npm", "run", "build", cwd=CLIENT, timeout=180)
    assert code == 0, output
    code, output = await run(
        "node_modules/.bin/tsc", "--noEmit", "-p", "tsconfig.json", cwd=NEXTJS, timeout=300
    )
    assert code == 0, output
