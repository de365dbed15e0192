"""Where W4's time goes: the cycle of one slot, from the end of a job to the start of the next.

    .venv/bin/python bench/profile_w4.py [--admin-url URL] [--jobs 2000] [--slots 100] [--rounds 3]

`--admin-url` defaults to BENCH_DATABASE_URL, then to the harness's default, as `run.py`.

W4 runs 2,000 jobs that each await 0.2 s on 100 slots, so its ideal is 500 jobs/s and every
millisecond a slot spends between two jobs costs about 0.5% of that. This runs W4's aijobs
worker in this process (the real `Worker`, the benchmark's provider, the benchmark's jobs in a
scratch database made and dropped here) and times each slot's cycle from the worker's side:

* occupied: from a job's start to the release of its slot (the 0.2 s wait, the job's own code
  and its turn on the event loop);
* release → claim sent: until the producer sends the claim that refills the slot;
* claim in flight: until that claim's rows are back (the statement and its commit);
* back → start: until the job is started.

It also prints the rate the benchmark reports (the database's first `started_at` to its last
`finished_at`) and the claims' sizes and round trips. The claim is timed without touching the
hot path: the producer computes each claim's lease deadline (LEASE_SECONDS ahead) just
before sending it and hands it to every job it starts, and its first job starts the moment
its rows are back.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR / "systems")]

from aijobs_bench_provider import SLEEP_SECONDS, BenchProvider  # noqa: E402
from run import DEFAULT_ADMIN_URL, W4_SLOTS, fresh_database  # noqa: E402
from systems.aijobs_system import LOOP, AijobsSystem  # noqa: E402
from systems.base import DrainTimings  # noqa: E402

from aijobs import eventloop  # noqa: E402
from aijobs.config import Settings, load_settings  # noqa: E402
from aijobs.db.rows import ClaimedJob  # noqa: E402
from aijobs.db.store import Store  # noqa: E402
from aijobs.worker.runner import Worker  # noqa: E402


@dataclass
class Timeline:
    starts: list[float] = field(default_factory=list)
    releases: list[float] = field(default_factory=list)
    #: (sent, rows back) per claim that returned jobs.
    claims: dict[float, float] = field(default_factory=dict)


class TimedWorker(Worker):
    """The benchmark's worker, noting when each slot is filled and freed (one append each)."""

    def __init__(self, timeline: Timeline, settings: Settings, *args: Any) -> None:
        super().__init__(settings, *args)
        self.timeline = timeline

    def _start(self, job: ClaimedJob, leased_until: float) -> None:
        now = time.monotonic()
        self.timeline.starts.append(now)
        self.timeline.claims.setdefault(leased_until - self.settings.lease_seconds, now)
        super()._start(job, leased_until)

    def _release(self, job_id: Any) -> None:
        if job_id in self.running:
            self.timeline.releases.append(time.monotonic())
        super()._release(job_id)


async def drain(url: str, jobs: int, slots: int) -> Timeline:
    os.environ.update(DATABASE_URL=url, WORKER_CONCURRENCY=str(slots), LOG_LEVEL="WARNING")
    settings = load_settings(_env_file=None)
    store = await Store.open(url, min_size=3, max_size=4, name="aijobs-profile-w4")
    timeline = Timeline()
    worker = TimedWorker(timeline, settings, store, BenchProvider(), url)
    try:
        task = asyncio.create_task(worker.run())
        async with asyncio.timeout(max(60.0, jobs / 10)):  # a stuck worker ends the profile
            while len(timeline.releases) < jobs:
                await asyncio.sleep(0.05)
        worker.request_stop()
        await task
    finally:
        await store.close()
    return timeline


def ms(values: list[float]) -> str:
    return f"mean {statistics.mean(values) * 1e3:6.2f} ms, p50 {statistics.median(values) * 1e3:6.2f} ms"


def report(timeline: Timeline, rated: DrainTimings, jobs: int, slots: int) -> None:
    starts, releases = sorted(timeline.starts), sorted(timeline.releases)
    sent = sorted(timeline.claims)
    occupied = [r - s for s, r in zip(starts, releases, strict=True)]
    to_send, in_flight, to_start = [], [], []
    for i in range(jobs - slots):
        freed, filled = releases[i], starts[i + slots]
        # The claim that filled the slot: the last one sent before its job started.
        claim = sent[bisect.bisect_right(sent, filled) - 1]
        back = timeline.claims[claim]
        to_send.append(max(0.0, claim - freed))
        in_flight.append(back - max(claim, freed))
        to_start.append(filled - back)
    rate = rated.done / (rated.last_end - rated.first_start)
    cycle = statistics.mean(occupied) + statistics.mean(to_send) + statistics.mean(in_flight)
    cycle += statistics.mean(to_start)
    trips = [timeline.claims[c] - c for c in sent]
    print(f"  rate {rate:.1f} jobs/s = {rate / (slots / SLEEP_SECONDS):.3f} of ideal (database clock)")
    print(f"  occupied              {ms(occupied)}")
    print(f"  release -> claim sent {ms(to_send)}")
    print(f"  claim in flight       {ms(in_flight)}")
    print(f"  back -> start         {ms(to_start)}")
    print(f"  cycle {cycle * 1e3:.2f} ms: at most {SLEEP_SECONDS / cycle:.3f} of ideal")
    print(f"  {len(sent)} claims with jobs, {jobs / len(sent):.1f} jobs each; round trip {ms(trips)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=W4_SLOTS)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    system = AijobsSystem()
    for n in range(args.rounds):
        with fresh_database(args.admin_url, f"bench_profile_w4_{n}") as url:
            system.prepare(url)
            system.enqueue_for_drain(url, args.jobs, "sleep")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("analyze")
            print(f"round {n + 1}:")
            since = time.time()
            timeline = eventloop.run(drain(url, args.jobs, args.slots), LOOP)
            report(timeline, system.drain_timings(url, since), args.jobs, args.slots)


if __name__ == "__main__":
    main()
