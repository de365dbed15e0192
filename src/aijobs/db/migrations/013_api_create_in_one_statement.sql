-- The API's creation of a job without an Idempotency-Key, in one statement: one round trip
-- where the request transaction took four (BEGIN, the role and claims, the creation,
-- COMMIT). On the benchmark machine each round trip cost the API process about 0.2 ms of
-- CPU in the socket calls alone, more than the rest of the request's database work.
--
-- The caller is the API's own login role, in autocommit; the function switches to
-- `authenticated` with the request's verified claims (both local to the statement's
-- transaction, so nothing outlives it on the pooled connection) and then runs exactly what
-- the request transaction ran: create_job_within_cap as `authenticated` (EXECUTE checked for
-- that role, the count under RLS, the acting user from the claims), which charges through
-- create_credit_consuming_job. A refusal raises and rolls back everything, as before.
--
-- Whoever may call this may act for any user (the claims are an argument), so only its
-- owner may: EXECUTE is revoked from PUBLIC, and the API roles never get it.
create function api_create_job(
    p_claims           text,
    p_max_in_flight    integer,
    p_type             text,
    p_payload          jsonb,
    p_priority         smallint default 0,
    p_run_at           timestamptz default null,
    p_max_attempts     integer default 4,
    p_retry_of         uuid default null
)
returns table (
    id uuid, status job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz
)
language plpgsql
set search_path = public, pg_temp
as $$
begin
    perform set_config('role', 'authenticated', true), set_config('request.jwt.claims', p_claims, true);
    return query select * from create_job_within_cap(
        p_max_in_flight, p_type, p_payload, p_priority, p_run_at, p_max_attempts, null, p_retry_of
    );
end
$$;

revoke all on function api_create_job(text, integer, text, jsonb, smallint, timestamptz, integer, uuid)
    from public;
