"""The CLI refuses bad input and unusable environments with one clear line, never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, worker_env
from tests.support.database import create_test_database, drop_database

USER = str(uuid.uuid4())


def aijobs(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = worker_env(db_url, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, "-m", "aijobs", *args], env=env, capture_output=True, text=True, timeout=60
    )


def refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output, output
    for word in words:
        assert word in output, output


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    """A database no migration ran on."""
    url = create_test_database(admin_url, "template0", prefix="aj_empty")
    try:
        yield url
    finally:
        drop_database(admin_url, url)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["jobs", "list", "--status", "bogus"], "--status"),
        (["accounts", "show", "--user", USER, "--ledger", "-1"], "--ledger"),
        (["accounts", "grant", "--user", USER, "--amount", "99999999999999999999"], "--amount"),
        (["accounts", "create", "--credits", "99999999999999999999"], "--credits"),
        (
            ["enqueue", "sentiment_analysis", "--user", USER, "--payload", "{}", "--idempotency-key", ""],
            "--idempotency-key",
        ),
        (
            [
                "enqueue",
                "sentiment_analysis",
                "--user",
                USER,
                "--payload",
                "{}",
                "--idempotency-key",
                "k" * 256,
            ],
            "--idempotency-key",
        ),
    ],
    ids=["status", "ledger", "amount", "credits", "empty-key", "long-key"],
)
def test_bad_options_are_named(db_url: str, args: list[str], option: str) -> None:
    refused(aijobs(db_url, *args), 2, option)


@pytest.mark.parametrize("args", [["stats"], ["jobs", "list"], ["accounts", "show", "--user", USER]])
def test_an_unmigrated_database_asks_for_migrate(empty_db: str, args: list[str]) -> None:
    refused(aijobs(empty_db, *args), 2, "aijobs migrate")


def test_an_unreachable_database_is_one_line(db_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"postgresql://root@127.0.0.1:{s.getsockname()[1]}/nowhere"
    done = aijobs(closed, "stats")
    refused(done, 1, "error:", "database")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_metrics_port_in_use_is_named(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused(aijobs(db_url, "worker", "--metrics-port", port), 1, "metrics port", port)


def test_stats_json_lists_the_top_tenants_and_accounts_limit_sets_one(db_url: str) -> None:
    """`aijobs accounts limit` sets a tenant's own limit (or back to the default); `aijobs
    stats --json --tenants N` lists the tenants with the most jobs waiting, with it."""
    done = aijobs(db_url, "accounts", "limit", "--user", USER, "--max-running", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"tenant": USER, "max_running": 3}
    aijobs(db_url, "accounts", "grant", "--user", USER, "--amount", "5")
    for _ in range(2):
        created = aijobs(
            db_url, "enqueue", "sentiment_analysis", "--user", USER, "--payload", '{"text": "x"}'
        )
        assert created.returncode == 0, created.stderr
    stats = aijobs(db_url, "stats", "--json", "--tenants", "5")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["queue"]["top_tenants"] == [
        {"tenant": USER, "pending": 2, "processing": 0, "weight": 1, "max_running": 3}
    ]
    back = aijobs(db_url, "accounts", "limit", "--user", USER, "--default")
    assert json.loads(back.stdout) == {"tenant": USER, "max_running": None}
    refused(aijobs(db_url, "accounts", "limit", "--user", USER), 2, "--max-running", "--default")
    refused(aijobs(db_url, "accounts", "limit", "--user", USER, "--max-running", "0"), 2, "--max-running")
    refused(aijobs(db_url, "stats", "--tenants", "501"), 2, "--tenants")


def test_a_grant_with_a_key_is_made_once_and_a_bad_note_is_named(db_url: str) -> None:
    user = str(uuid.uuid4())
    grant = ["accounts", "grant", "--user", user, "--amount", "30", "--key", "order-17"]
    for _ in range(2):
        done = aijobs(db_url, *grant)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["balance"] == 30
    refused(
        aijobs(db_url, "accounts", "grant", "--user", user, "--amount", "31", "--key", "order-17"),
        1,
        "order-17",
    )
    refused(
        aijobs(db_url, "accounts", "grant", "--user", user, "--amount", "1", "--note", "n" * 201), 1, "note"
    )


@pytest.mark.parametrize(
    ("provider", "words"),
    [
        ("nosuchmod_for_aijobs:Factory", ["LLM_PROVIDER=nosuchmod_for_aijobs:Factory", "cannot import"]),
        ("os:nosuch", ["LLM_PROVIDER=os:nosuch", "no callable 'nosuch'"]),
        ("json:loads", ["LLM_PROVIDER=json:loads", "loads(settings) failed"]),
        ("builtins:dict", ["LLM_PROVIDER=builtins:dict", "not a provider"]),
        ("openai", ["OPENAI_API_KEY"]),
    ],
)
def test_a_provider_that_cannot_be_made_is_one_line_at_start(
    db_url: str, provider: str, words: list[str]
) -> None:
    env = worker_env(
        db_url,
        PYTHONPATH=f"{ROOT / 'src'}:{ROOT}",
        LOG_LEVEL="WARNING",
        LLM_PROVIDER=provider,
        OPENAI_API_KEY="",
    )
    done = subprocess.run(
        [sys.executable, "-m", "aijobs", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    refused(done, 2, *words)


def test_text_the_database_cannot_store_is_named_by_field_and_line(db_url: str, tmp_path: Path) -> None:
    user = str(uuid.uuid4())
    assert aijobs(db_url, "accounts", "grant", "--user", user, "--amount", "5").returncode == 0
    nul = json.dumps({"text": "a\u0000b"})
    refused(
        aijobs(db_url, "enqueue", "sentiment_analysis", "--user", user, "--payload", nul), 1, "text", "NUL"
    )
    lines = tmp_path / "jobs.jsonl"
    good = json.dumps({"type": "sentiment_analysis", "payload": {"text": "fine"}})
    lines.write_text(
        good + "\n" + json.dumps({"type": "sentiment_analysis", "payload": json.loads(nul)}) + "\n"
    )
    refused(aijobs(db_url, "enqueue-batch", str(lines), "--user", user), 2, "line 2", "text", "NUL")


def test_cancelling_a_finished_job_is_refused_as_the_api_refuses_it(db_url: str) -> None:
    user = str(uuid.uuid4())
    assert aijobs(db_url, "accounts", "grant", "--user", user, "--amount", "5").returncode == 0
    made = aijobs(db_url, "enqueue", "sentiment_analysis", "--user", user, "--payload", '{"text": "ok"}')
    assert made.returncode == 0, made.stderr
    job_id = json.loads(made.stdout)["id"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update aijobs.jobs set status = 'completed', finished_at = now(), result = '{}' where id = %s",
            (job_id,),
        )
    refused(aijobs(db_url, "jobs", "cancel", job_id), 1, "already completed", "nothing to cancel")
