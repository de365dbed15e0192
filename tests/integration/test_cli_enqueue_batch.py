"""`aijobs enqueue-batch`: a JSON Lines file becomes jobs all or nothing, bad lines named."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from tests.conftest import worker_env

LINES = [
    '{"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}',
    "",
    '{"type": "review_processing", "payload": {"review_text": "Cold food."}, "priority": 4}',
]


def run(db_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aijobs", "enqueue-batch", *args],
        env=worker_env(db_url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def state(db_url: str, user: uuid.UUID) -> tuple[int, list[tuple[str, int, int]]]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select balance from aijobs.accounts where user_id = %s", (user,)).fetchone()
        jobs = conn.execute(
            "select type, priority, max_attempts from aijobs.jobs where user_id = %s order by type", (user,)
        ).fetchall()
    assert row is not None
    return int(row[0]), [(str(t), int(p), int(m)) for t, p, m in jobs]


def test_a_file_becomes_jobs_charged_together(db_url: str, tmp_path: Path) -> None:
    user = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 10, 'test')", (user,))
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    done = run(db_url, str(path), "--user", str(user), "--ids")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["created"], out["cost"], out["balance"], len(out["ids"])) == (2, 4, 6, 2)
    assert state(db_url, user) == (6, [("review_processing", 4, 4), ("sentiment_analysis", 0, 4)])

    from_stdin = run(db_url, "-", "--user", str(user), stdin=LINES[0])
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["balance"] == 5


def test_a_bad_line_or_a_short_balance_creates_nothing(db_url: str, tmp_path: Path) -> None:
    user = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 3, 'test')", (user,))
    cases = [
        ([*LINES, '{"type": "ai_generation", "payload": {"tone": "rude"}}'], 2, "line 4: invalid payload"),
        (
            [*LINES, '{"type": "sentiment_analysis", "payload": {"text": "x"}, "priority": 500}'],
            2,
            "line 4: priority",
        ),
        ([*LINES, "{not json"], 2, "line 4:"),
        (LINES, 1, "insufficient credits"),  # 4 credits against a balance of 3
        ([""], 2, "holds no jobs"),
    ]
    for lines, code, message in cases:
        path = tmp_path / "jobs.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        refused = run(db_url, str(path), "--user", str(user))
        assert refused.returncode == code, (lines, refused.stdout, refused.stderr)
        assert message in refused.stderr, refused.stderr
    missing = run(db_url, str(tmp_path / "absent.jsonl"), "--user", str(user))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert state(db_url, user) == (3, [])


def test_a_large_file_prints_a_summary_and_names_every_bad_line(db_url: str, tmp_path: Path) -> None:
    """10,000 lines print a few lines of summary, not 10,008 of ids (`--ids` asks for them);
    every invalid line is named, up to 20, then how many more, and nothing is created."""
    user = uuid.uuid4()
    n = 10_000
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, %s, 'test')", (user, n))
    good = '{"type": "sentiment_analysis", "payload": {"text": "Fine."}}'
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join([good] * n) + "\n", encoding="utf-8")
    done = run(db_url, str(path), "--user", str(user))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) < 10, done.stdout[:500]
    assert json.loads(done.stdout) == {"created": n, "cost": n, "balance": 0}

    bad_lines = [good] * 5 + ['{"type": "sentiment_analysis", "payload": {}}'] * 30 + ["{nope"] * 3
    path.write_text("\n".join(bad_lines), encoding="utf-8")
    refused = run(db_url, str(path), "--user", str(user))
    assert refused.returncode == 2, refused.stderr
    named = [line for line in refused.stderr.splitlines() if " line " in line]
    assert len(named) == 20 and named[0].startswith(f"error: {path} line 6:"), refused.stderr
    assert "and 13 more invalid lines" in refused.stderr
    assert "33 invalid line(s)" in refused.stderr
