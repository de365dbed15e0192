"""What every request handler shares, held on `app.state.aijobs` for the app's lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from fastapi import Request

from aijobs.api.auth import TokenVerifier
from aijobs.api.events import JobEventsHub
from aijobs.api.grouped_creation import CreationGroups
from aijobs.api.streams import StreamCap
from aijobs.config import Settings
from aijobs.db.store import Store


@dataclass
class ApiState:
    settings: Settings
    verifier: TokenVerifier
    database_url: str
    #: Open SSE streams and long polls per user in this process (MAX_STREAMS_PER_USER).
    streams: StreamCap
    #: Set by the lifespan (opened there unless create_app was given one).
    store: Store | None = None
    hub: JobEventsHub | None = None
    #: The creations without an Idempotency-Key, grouped per statement (set with the store).
    creations: CreationGroups | None = None
    #: The demo user `aijobs dev` creates; set only in dev mode (enables the mint button).
    dev_user: UUID | None = None

    @property
    def grouped_creations(self) -> CreationGroups:
        assert self.creations is not None, "the API's lifespan has not opened the store"
        return self.creations

    @property
    def dev(self) -> bool:
        return self.dev_user is not None and self.settings.jwt_secret is not None


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.aijobs
    return state


# The dependencies are `async def` although they do no I/O: FastAPI runs a plain `def`
# dependency in a thread pool, a thread hop on every request.
async def get_state(request: Request) -> ApiState:
    return state_of(request)


async def get_store(request: Request) -> Store:
    store = state_of(request).store
    assert store is not None, "the API's lifespan has not opened the store"
    return store


async def get_hub(request: Request) -> JobEventsHub:
    hub = state_of(request).hub
    assert hub is not None, "the API's lifespan has not started the job events listener"
    return hub
