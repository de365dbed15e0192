-- Exactly the privileges aijobs grants, whatever the database's default privileges add.
--
-- Supabase's projects carry `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES,
-- FUNCTIONS, SEQUENCES TO anon, authenticated, service_role`, so every object the earlier
-- migrations created there was granted to those roles directly, not through PUBLIC, and
-- their `REVOKE … FROM PUBLIC` took nothing away. That gave `anon` EXECUTE on
-- api_create_job (which takes the claims as an argument: whoever runs it acts for anyone),
-- TRUNCATE on jobs and the ledger (TRUNCATE is not subject to row-level security), and the
-- migration bookkeeping, which has no RLS, to read and write.
--
-- So: take everything from the three roles on aijobs' own objects (named one by one, never
-- "all in schema", which would reach the project's other objects), then grant again what
-- migrations 004, 006, 007, 008, 010, 015 and 016 meant to grant. PUBLIC keeps what it had.
-- On a database without such defaults the result is the same as before this migration; a
-- test migrates under Supabase's defaults and compares. A later migration that creates
-- objects in public must revoke from these roles too, and that test says so.

revoke all on table
    accounts, credit_ledger, jobs, job_attempts, job_types, workers, provider_limits,
    provider_calls, api_idempotency_keys, queue_samples, maintenance_leader, schema_migrations
    from anon, authenticated, service_role;
revoke all on sequence job_lease_seq, credit_ledger_id_seq, provider_calls_id_seq
    from anon, authenticated, service_role;
revoke all on function
    aijobs_acting_user(uuid),
    aijobs_admit_creations(integer, integer),
    aijobs_uuid_v7(),
    api_create_job(text, integer, text, jsonb, smallint, timestamptz, integer, uuid),
    create_credit_consuming_job(uuid, text, jsonb, smallint, timestamptz, integer, text, uuid),
    create_credit_consuming_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[]),
    create_job_within_cap(integer, text, jsonb, smallint, timestamptz, integer, text, uuid),
    create_jobs_within_cap(integer, text[], jsonb[], smallint[], timestamptz[], integer[]),
    credit_grant(uuid, bigint, text),
    credit_ledger_append_only(),
    job_cancel(uuid, uuid),
    jobs_notify_status(),
    jobs_refund_on_terminal(),
    provider_budget_reserve(text, integer, integer, integer, real)
    from anon, authenticated, service_role;

-- Reads under RLS for the API's roles; the idempotency keys are the API's one direct write.
grant select on accounts, credit_ledger, jobs, job_attempts, job_types to authenticated;
grant select, insert, update on api_idempotency_keys to authenticated;
grant select on job_types to anon;
-- Supabase's server-side role, as the worker and the CLI use the tables.
grant all on
    accounts, credit_ledger, jobs, job_attempts, job_types, workers, provider_limits,
    provider_calls, api_idempotency_keys, queue_samples, maintenance_leader
    to service_role;
grant usage on sequence job_lease_seq to service_role;

grant execute on function
    aijobs_acting_user(uuid),
    aijobs_admit_creations(integer, integer),
    create_credit_consuming_job(uuid, text, jsonb, smallint, timestamptz, integer, text, uuid),
    create_credit_consuming_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[]),
    create_job_within_cap(integer, text, jsonb, smallint, timestamptz, integer, text, uuid),
    create_jobs_within_cap(integer, text[], jsonb[], smallint[], timestamptz[], integer[]),
    job_cancel(uuid, uuid)
    to authenticated, service_role;
grant execute on function
    credit_grant(uuid, bigint, text),
    provider_budget_reserve(text, integer, integer, integer, real)
    to service_role;
