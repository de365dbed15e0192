"""Fixtures shared by every test: a real PostgreSQL, a fresh database per test, a store."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aijobs.config import Settings, load_settings
from aijobs.db.store import Store
from tests.support.database import create_test_database, drop_database, ensure_template, server_url

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run when `--dist loadgroup` would not keep a group in one worker: tests that
    share a server's data directory (one stops it while the other uses it) then ran at once."""
    if not getattr(config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {len(lost)} tests, e.g. {lost[0]}")


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    with server_url() as url:
        yield url


@pytest.fixture(scope="session")
def template_name(admin_url: str) -> str:
    return ensure_template(admin_url)


@pytest.fixture
def db_url(admin_url: str, template_name: str) -> Iterator[str]:
    """A freshly migrated database of this test's own."""
    url = create_test_database(admin_url, template_name)
    try:
        yield url
    finally:
        drop_database(admin_url, url)


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings tuned for tests: quick polls, short leases, offline provider."""
    return load_settings(
        database_url=db_url,
        polling_interval=200,
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        shutdown_grace_seconds=5.0,
        llm_provider="offline",
        _env_file=None,
    )


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url, min_size=1, max_size=8, name="aijobs-test")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def funded_user(store: Store) -> uuid.UUID:
    """An account with 1,000 credits."""
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 1000, "test credits")
    return user


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def worker_env(db_url: str, **extra: str) -> dict[str, str]:
    """Environment for an `aijobs worker` subprocess in tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env.update(
        DATABASE_URL=db_url,
        POLLING_INTERVAL="200",
        LEASE_SECONDS="3",
        HEARTBEAT_SECONDS="0.5",
        RETRY_BASE_SECONDS="0.05",
        RETRY_MAX_SECONDS="0.2",
        LLM_PROVIDER="tests.support.providers:scripted",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
