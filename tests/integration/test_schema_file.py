"""The readable schema (db/schema.sql) is what the migrations build, aijobs lives in its own
namespace, and the product's own tables with the same names are left alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import pytest

from aijobs.db.migrate import DeploymentSettings, available, migrate
from aijobs.states import AttemptOutcome, JobStatus
from tests.support.database import create_test_database, drop_database, job_type_rows

# Everything in schema `aijobs` a migration can change, as text that compares equal when the
# objects are the same (names of generated constraints and owners included).
CATALOG = {
    "columns": """
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity, a.attnum
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relnamespace = 'aijobs'::regnamespace and a.attnum > 0 and not a.attisdropped
        order by 1, 2""",
    "relations": """
        select relname, relkind, relrowsecurity, relforcerowsecurity, coalesce(relacl::text, '')
        from pg_class where relnamespace = 'aijobs'::regnamespace order by 1""",
    "constraints": """
        select conrelid::regclass::text, contypid::regtype::text, conname, pg_get_constraintdef(oid)
        from pg_constraint where connamespace = 'aijobs'::regnamespace order by 1, 2, 3""",
    "indexes": """
        select indexname, indexdef from pg_indexes where schemaname = 'aijobs' order by 1""",
    "functions": """
        select p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.prosecdef,
               coalesce(p.proconfig::text, ''), coalesce(p.proacl::text, '')
        from pg_proc p where p.pronamespace = 'aijobs'::regnamespace order by 1""",
    "triggers": """
        select tgname, pg_get_triggerdef(t.oid) from pg_trigger t
        join pg_class c on c.oid = t.tgrelid
        where c.relnamespace = 'aijobs'::regnamespace and not t.tgisinternal order by 1""",
    "policies": """
        select tablename, policyname, permissive, roles::text, cmd, coalesce(qual, ''),
               coalesce(with_check, '')
        from pg_policies where schemaname = 'aijobs' order by 1, 2""",
    "types": """
        select t.typname, t.typtype, coalesce(t.typbasetype::regtype::text, ''),
               coalesce((select string_agg(e.enumlabel, ',' order by e.enumsortorder)
                         from pg_enum e where e.enumtypid = t.oid), '')
        from pg_type t
        where t.typnamespace = 'aijobs'::regnamespace and t.typtype in ('d', 'e') order by 1""",
    "schema": """
        select nspname, coalesce(nspacl::text, '') from pg_namespace where nspname = 'aijobs'""",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in CATALOG.items()}


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    url = create_test_database(admin_url, "template0", prefix="aj_schema")
    try:
        yield url
    finally:
        drop_database(admin_url, url)


def test_schema_file_equals_what_the_migrations_build(admin_url: str, empty_db: str) -> None:
    migrate(empty_db)
    from_file = create_test_database(admin_url, "template0", prefix="aj_schemafile")
    try:
        text = (resources.files("aijobs.db") / "schema.sql").read_text(encoding="utf-8")
        with psycopg.connect(from_file, autocommit=True) as conn:
            conn.execute(text.encode())
        migrated, built = catalog(empty_db), catalog(from_file)
        assert migrated["columns"], "the catalog query read nothing"
        for part in CATALOG:
            assert migrated[part] == built[part], f"schema.sql and the migrations differ in {part}"
    finally:
        drop_database(admin_url, from_file)


def test_nothing_of_aijobs_is_in_public(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        public = conn.execute(
            """select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace
               union all
               select p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace
               union all
               select t.typname from pg_type t
               where t.typnamespace = 'public'::regnamespace and t.typtype in ('d', 'e', 'c')
                 and not exists (select from pg_class c where c.reltype = t.oid)"""
        ).fetchall()
        security_definers = conn.execute(
            """select p.oid::regprocedure::text, coalesce(p.proconfig::text, '')
               from pg_proc p where p.pronamespace = 'aijobs'::regnamespace and p.prosecdef"""
        ).fetchall()
    assert public == []
    assert security_definers, "expected SECURITY DEFINER functions in aijobs"
    for name, config in security_definers:
        assert "search_path=aijobs, pg_temp" in config, name


def test_the_product_s_own_tables_of_the_same_names_are_left_alone(empty_db: str) -> None:
    product = {
        "accounts": "create table public.accounts (id serial primary key, email text not null)",
        "jobs": "create table public.jobs (id bigint primary key, title text, company text)",
        "workers": "create table public.workers (badge text primary key, name text)",
        "schema_migrations": "create table public.schema_migrations (version text primary key, dirty bool)",
    }
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for ddl in product.values():
            conn.execute(ddl)
        conn.execute("insert into public.accounts (email) values ('a@example.test')")
        conn.execute("insert into public.jobs values (7, 'barista', 'Cafe')")
        conn.execute("insert into public.workers values ('b1', 'Ann')")
        conn.execute("insert into public.schema_migrations values ('20240101', false)")
        before = _public_state(conn)

    applied = migrate(
        empty_db,
        job_types=job_type_rows(),
        settings=DeploymentSettings(max_jobs_in_flight_per_user=100),
    )
    assert applied == [f"{m.version:03d}_{m.name}" for m in available()]
    assert migrate(empty_db, job_types=job_type_rows()) == []

    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert _public_state(conn) == before
        user = uuid.uuid4()
        conn.execute("select aijobs.grant_credits(%s, 5)", (user,))
        row = conn.execute(
            "select created from aijobs.create_jobs(%s, array['sentiment_analysis'], array[%s::jsonb])",
            (user, '{"text": "works beside the product tables"}'),
        ).fetchone()
        assert row == (True,)


def _public_state(conn: psycopg.Connection[Any]) -> list[Any]:
    columns = conn.execute(
        """select table_name, column_name, data_type from information_schema.columns
           where table_schema = 'public' order by 1, 2"""
    ).fetchall()
    rows = [
        conn.execute(f"select * from public.{t} order by 1").fetchall()
        for t in ("accounts", "jobs", "workers", "schema_migrations")
    ]
    return [columns, rows]


def test_the_job_state_vocabulary_is_the_database_s(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        labels = conn.execute("select unnest(enum_range(null::aijobs.job_status))::text").fetchall()
        check = conn.execute(
            """select pg_get_constraintdef(oid) from pg_constraint
               where conrelid = 'aijobs.job_attempts'::regclass and conname = 'job_attempts_outcome_check'"""
        ).fetchone()
    assert [label for (label,) in labels] == [s.value for s in JobStatus]
    assert check is not None
    for outcome in AttemptOutcome:
        assert f"'{outcome.value}'" in check[0]
    assert check[0].count("'") == 2 * len(AttemptOutcome)
