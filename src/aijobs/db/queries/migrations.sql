-- The migration runner's own bookkeeping (aijobs.db.migrate), in the aijobs schema.

-- name: migrations_bootstrap
-- Before the first migration: the schema and the table that records what was applied.
create schema if not exists aijobs;
create table if not exists aijobs.schema_migrations (
    version     integer primary key,
    name        text not null,
    checksum    text not null,
    applied_at  timestamptz not null default now()
);

-- name: migrations_applied
select version, checksum from aijobs.schema_migrations;

-- name: migrations_record
insert into aijobs.schema_migrations (version, name, checksum) values (%(version)s, %(name)s, %(checksum)s);

-- name: migrations_table_exists
select to_regclass('aijobs.schema_migrations') is not null;

-- name: settings_sync
-- The deployment's limits, which the creation function reads (never a caller's argument).
update aijobs.settings
set max_jobs_in_flight_per_user = %(max_in_flight)s, updated_at = now()
where max_jobs_in_flight_per_user is distinct from %(max_in_flight)s;

-- name: settings_sync_running
-- The deployment's limit on one tenant's running jobs, which the claim reads.
update aijobs.settings
set max_running_per_tenant = %(max_running)s, updated_at = now()
where max_running_per_tenant is distinct from %(max_running)s;

-- name: settings_sync_tenant_claim
-- Where a user's own creation (a Supabase RPC) finds its tenant in its JWT (null: the user).
update aijobs.settings
set tenant_claim = %(tenant_claim)s, updated_at = now()
where tenant_claim is distinct from %(tenant_claim)s;

-- name: api_applied_migrations
-- /readyz asks on a pooled connection: a probe must not open a connection of its own per call.
select version from aijobs.schema_migrations;
