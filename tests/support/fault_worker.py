"""`python -m tests.support.fault_worker worker …`: the `aijobs` CLI with test-only faults armed.

Fault points stay out of the production code: this wrapper patches them in, in the worker
subprocess only, from environment variables, and then runs the ordinary CLI.

AIJOBS_TEST_CRASH_BEFORE_COMMIT=<dir>
    The process dies (os._exit(137), like SIGKILL) the first time it is about to commit a
    *completed* result for a job: after the provider answered, before the result is stored.
    A marker file per job id in <dir> makes it once per job, so the re-run can succeed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from aijobs.db.repos import jobs
from aijobs.db.rows import Finish


def arm_crash_before_commit(marker_dir: Path) -> None:
    original = jobs.JobsRepo.finish

    async def finish(
        self: jobs.JobsRepo, rows: Sequence[Finish], worker_id: str
    ) -> dict[tuple[UUID, int], str]:
        fresh = [r for r in rows if r.outcome == "completed" and not (marker_dir / str(r.id)).exists()]
        if fresh:
            for r in fresh:
                (marker_dir / str(r.id)).touch()
            os._exit(137)
        return await original(self, rows, worker_id)

    jobs.JobsRepo.finish = finish  # type: ignore[method-assign]


def main(argv: Any = None) -> None:
    marker = os.environ.get("AIJOBS_TEST_CRASH_BEFORE_COMMIT")
    if marker:
        Path(marker).mkdir(parents=True, exist_ok=True)
        arm_crash_before_commit(Path(marker))
    from aijobs.cli import app

    app(prog_name="aijobs")


if __name__ == "__main__":
    main()
