"""`/api/me`, `/api/me/ledger` and `/api/me/settings`: the caller's balance, credit history
(read under RLS) and the settings its LLM job types use."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from aijobs.api.auth import CurrentUser
from aijobs.api.models import LedgerEntry, LedgerPage, Me
from aijobs.api.pagination import ledger_cursor, parse_ledger_cursor
from aijobs.api.problems import responses
from aijobs.api.state import ApiState, get_state, get_store
from aijobs.db.store import Store
from aijobs.jobs import AccountSettings

router = APIRouter(tags=["me"])


@router.get("/api/me", response_model=Me, summary="Who I am and my credit balance", responses=responses(401))
async def me(
    principal: CurrentUser,
    store: Annotated[Store, Depends(get_store)],
    state: Annotated[ApiState, Depends(get_state)],
) -> Me:
    assert principal.user_id is not None
    async with store.as_user(principal.claims) as session:
        balance = await session.accounts.balance(principal.user_id)
        in_flight = await session.jobs.in_flight(principal.user_id)
    return Me(
        user_id=principal.user_id,
        balance=balance or 0,
        has_account=balance is not None,
        jobs_in_flight=in_flight,
        max_jobs_in_flight=state.settings.in_flight_quota,
    )


@router.get(
    "/api/me/ledger",
    response_model=LedgerPage,
    summary="My credit ledger, newest first",
    responses=responses(401, 422),
)
async def ledger(
    principal: CurrentUser,
    store: Annotated[Store, Depends(get_store)],
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> LedgerPage:
    assert principal.user_id is not None
    before = parse_ledger_cursor(cursor)
    async with store.as_user(principal.claims) as session:
        rows = await session.accounts.ledger_page(principal.user_id, before_id=before, limit=limit + 1)
    items = [LedgerEntry.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return LedgerPage(items=items, next_cursor=ledger_cursor(items[-1].id) if more else None)


@router.get(
    "/api/me/settings",
    response_model=AccountSettings,
    summary="My account's voice for LLM job types (brand voice, business name, signature, defaults)",
    responses=responses(401),
)
async def my_settings(principal: CurrentUser, store: Annotated[Store, Depends(get_store)]) -> AccountSettings:
    assert principal.user_id is not None
    async with store.as_user(principal.claims) as session:
        row = await session.accounts.settings(principal.user_id)
    return AccountSettings.model_validate(row or {})


@router.put(
    "/api/me/settings",
    response_model=AccountSettings,
    summary="Replace my account's settings (a field left out is cleared)",
    responses=responses(401, 422),
)
async def put_my_settings(
    body: AccountSettings, principal: CurrentUser, store: Annotated[Store, Depends(get_store)]
) -> AccountSettings:
    assert principal.user_id is not None
    return await store_settings(store, principal.user_id, body)


async def store_settings(store: Store, user_id: UUID, body: AccountSettings) -> AccountSettings:
    """Written as the API's own role for a user it verified: users write no table directly."""
    async with store.session() as session:
        row = await session.accounts.put_settings(user_id, body.model_dump())
    return AccountSettings.model_validate(row)
