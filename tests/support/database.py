"""Real PostgreSQL for tests: DATABASE_URL when set, else the embedded server.

One template database per schema fingerprint is migrated once; every test gets a fresh
copy (`CREATE DATABASE ... TEMPLATE`), so tests are isolated and fast, and can run in
parallel (pytest-xdist) against the same server.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aijobs.db.migrate import migrate, schema_fingerprint
from aijobs.jobs import registry

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_LOCK = 0x41494A4F42530002


def job_type_rows() -> list[tuple[str, int, float]]:
    return [(jt.name, jt.cost, jt.timeout_seconds) for jt in registry().values()]


@contextmanager
def server_url() -> Iterator[str]:
    """An admin connection URL to a real server."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    from aijobs.db.embedded import embedded_server

    with embedded_server(ROOT / ".aijobs" / "test-pgdata") as url:
        yield url


def with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def server_version(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.info.server_version


def template_name_for(rows: list[tuple[str, int, float]]) -> str:
    """The template's name: the migrations' fingerprint and the job types it was filled with,
    so a change to either (a type added, a cost changed) makes a new template, never reuses
    a stale one."""
    types = hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()[:8]
    return f"aijobs_tpl_{schema_fingerprint()}_{types}"


def ensure_template(admin_url: str) -> str:
    """Create and migrate the template for the current schema, once per server."""
    name = template_name_for(job_type_rows())
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (TEMPLATE_LOCK,))
        try:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                try:
                    migrate(with_dbname(admin_url, name), job_types=job_type_rows())
                except BaseException:
                    conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
                    raise
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (TEMPLATE_LOCK,))
    return name


def create_test_database(admin_url: str, template: str, prefix: str = "aj_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    strategy = sql.SQL(" strategy file_copy") if server_version(admin_url) >= 150000 else sql.SQL("")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}{}").format(
                sql.Identifier(name), sql.Identifier(template), strategy
            )
        )
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(str(name))))
