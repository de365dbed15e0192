"""`aijobs api --workers N` as an operator runs it: several uvicorn processes behind one port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aijobs.api.tokens import mint_token
from aijobs.db.store import Store
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
JOBS = 24

pytestmark = pytest.mark.slow


def created_total(text: str) -> float:
    """aijobs_jobs_created_total summed over job types (0 before the first creation)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "aijobs_jobs_created"
        for sample in family.samples
        if sample.name == "aijobs_jobs_created_total"
    )


async def test_two_api_processes_serve_one_set_of_counters(
    db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "PROMETHEUS_"))}
    env.update(
        DATABASE_URL=db_url,
        JWT_SECRET=JWT_SECRET,
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        TMPDIR=str(tmp_path),  # where the run's metrics directory goes, to check it is removed
    )
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aijobs", "api", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, funded_user)}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        # A fresh connection per request, so the kernel spreads them over both processes.
        for i in range(JOBS):
            res = httpx.post(
                f"{base}/api/jobs",
                headers=headers,
                json={"type": "sentiment_analysis", "payload": {"text": f"review {i}"}},
                timeout=10,
            )
            assert res.status_code == 201, res.text
        texts = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(12)]
        scrapes = [created_total(text) for text in texts]
        assert scrapes == [JOBS] * len(scrapes), f"every scrape counts all {JOBS} jobs: {scrapes}"
        # The queue gauges (read from the database by the answering process) are served too.
        assert all(
            f'aijobs_queue_depth{{status="pending",type="sentiment_analysis"}} {JOBS}.0' in t for t in texts
        ), texts[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log_path.read_text()
    leftovers = list(tmp_path.glob("aijobs-metrics-*"))
    assert not leftovers, f"the per-run metrics directory is removed: {leftovers}"
