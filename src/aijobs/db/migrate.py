"""Apply the numbered migrations in `migrations/`, once each, under an advisory lock.

Safe to run twice and from several processes at once: the lock serialises runners, and each
migration commits together with its row in `aijobs.schema_migrations`. An applied migration
whose file changed afterwards is reported, never silently re-applied. Everything lives in
schema `aijobs`, so a database that already has its own `schema_migrations` or `jobs` keeps them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from aijobs.db.queries import query

log = logging.getLogger("aijobs.migrate")

# Any constant works; it only has to be the same for every aijobs process.
MIGRATION_LOCK_KEY = 0x41494A4F42530001
_FILE = re.compile(r"^(\d{3})_(\w+)\.sql$")


class MigrationError(Exception):
    """A migration failed, or an applied one no longer matches its file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("aijobs.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def schema_fingerprint() -> str:
    """Identifies the schema the code expects (used to name test template databases)."""
    digest = hashlib.sha256()
    for migration in available():
        digest.update(migration.checksum.encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class DeploymentSettings:
    """What the database enforces for every caller, copied from the deployment's configuration
    (`aijobs.settings`): the in-flight quota per user (None: no quota), the limit on one
    tenant's running jobs (None: no limit) and the JWT claim naming a user's tenant (None: the
    user is the tenant)."""

    max_jobs_in_flight_per_user: int | None
    max_running_per_tenant: int | None = None
    tenant_claim: str | None = None


def migrate(
    conninfo: str,
    *,
    job_types: list[tuple[str, int, float]] | None = None,
    settings: DeploymentSettings | None = None,
) -> list[str]:
    """Apply pending migrations; return the names applied. Optionally sync job types and the
    deployment's settings."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(query("migrations_bootstrap"))
            done = {row[0]: row[1] for row in conn.execute(query("migrations_applied"))}
            for migration in available():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:03d}_{migration.name} was changed after it "
                            "was applied; add a new migration instead"
                        )
                    continue
                log.info("applying migration %03d_%s", migration.version, migration.name)
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            query("migrations_record"),
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "checksum": migration.checksum,
                            },
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.version:03d}_{migration.name} failed: {exc}"
                    ) from exc
                applied_now.append(f"{migration.version:03d}_{migration.name}")
            if job_types:
                names, costs, timeouts = (list(col) for col in zip(*job_types, strict=True))
                conn.execute(query("job_types_sync"), {"names": names, "costs": costs, "timeouts": timeouts})
            if settings is not None:
                conn.execute(query("settings_sync"), {"max_in_flight": settings.max_jobs_in_flight_per_user})
                conn.execute(query("settings_sync_running"), {"max_running": settings.max_running_per_tenant})
                conn.execute(query("settings_sync_tenant_claim"), {"tenant_claim": settings.tenant_claim})
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def pending(conninfo: str) -> list[str]:
    """Names of migrations not yet applied (the CLI checks before it starts a process)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(query("migrations_table_exists")).fetchone()
        done: set[int] = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute(query("migrations_applied"))}
    return not_applied(done)


def not_applied(done: set[int]) -> list[str]:
    """Names of the migrations whose versions are not in `done`, in order."""
    return [f"{m.version:03d}_{m.name}" for m in available() if m.version not in done]
