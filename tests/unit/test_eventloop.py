"""The long-lived processes start their loop with the startup heap frozen (issue 7, W5 tails)."""

from __future__ import annotations

import gc

import pytest

from aijobs import eventloop


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_freezes_what_startup_left_alive(loop: str) -> None:
    """Full collections skip the modules and schemas loaded before the loop (gc.freeze)."""
    gc.unfreeze()
    alive_before = len(gc.get_objects())

    async def main() -> int:
        return gc.get_freeze_count()

    try:
        frozen = eventloop.run(main(), loop)
    finally:
        gc.unfreeze()  # give this test process its collector back
    # Everything the test process had imported is now in the permanent generation.
    assert frozen >= alive_before // 2
    assert frozen > 10_000
