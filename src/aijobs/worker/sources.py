"""What the worker reads from the database for its job types: the stored catalog (compared at
start) and a job owner's account settings (for types that use them)."""

from __future__ import annotations

import logging
from uuid import UUID

from pydantic import ValidationError

from aijobs.db.store import Store
from aijobs.jobs.account import AccountSettings
from aijobs.jobs.catalog import StoredJobType

log = logging.getLogger("aijobs.worker")


class StoreCatalog:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def stored_job_types(self) -> list[StoredJobType]:
        async with self.store.session() as session:
            return [StoredJobType(**row) for row in await session.job_types.list()]


class StoreAccountSettings:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def for_job(self, job_id: UUID) -> AccountSettings | None:
        async with self.store.session() as session:
            row = await session.jobs.account_settings_for_job(job_id)
        if row is None:
            return None
        try:
            return AccountSettings.model_validate(row)
        except ValidationError as exc:
            # The table's checks match the model, so this is a row written around them: the job
            # still runs, in the type's own voice, rather than fail for its owner's settings.
            log.warning("⚠️ Ignoring the stored settings of job %s's account: %s", job_id, exc)
            return None
