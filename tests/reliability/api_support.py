"""What the API scenarios (9-12) share beyond the server fixtures: users with exact balances.

The running-server fixtures come from tests/reliability/conftest.py (the API tests' own).
"""

from __future__ import annotations

import uuid

from aijobs.db.store import Store
from tests.integration.api.conftest import StartApi

__all__ = ["StartApi", "make_user"]


async def make_user(store: Store, credits: int) -> uuid.UUID:
    """A fresh account holding exactly `credits`."""
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, credits, "reliability test credits")
    return user
