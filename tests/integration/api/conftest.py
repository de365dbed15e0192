"""Fixtures for API tests: a running server over real HTTP against the test's own database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from tests.support.api_server import ApiServer, api_settings

StartApi = Callable[..., ApiServer]


@pytest.fixture
def start_api(settings: Settings) -> Iterator[StartApi]:
    """Start a server with setting overrides; every server started is stopped at teardown."""
    started: list[ApiServer] = []

    def start(dev_user: uuid.UUID | None = None, **overrides: Any) -> ApiServer:
        server = ApiServer(api_settings(settings, **overrides), dev_user=dev_user).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def api(start_api: StartApi) -> ApiServer:
    return start_api()


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as c:
        yield c


@pytest.fixture
async def other_user(store: Store) -> uuid.UUID:
    """A second funded account (user B in isolation tests)."""
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 1000, "test credits")
    return user
