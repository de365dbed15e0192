-- The in-flight cap in one place, for single creations and batches alike.
--
-- aijobs_admit_creations serialises this user's creations (a transaction-scoped advisory
-- lock), counts their jobs in flight, and refuses (AJ006, with the count and the limit) when
-- `p_adding` more would take them past the cap. create_job_within_cap (010) did this inline;
-- it now calls the helper with 1, and the batch form, create_jobs_within_cap, with the size
-- of the batch, so a batch is admitted whole or not at all, as it is charged.
--
-- All three are SECURITY INVOKER: the count sees only the caller's own jobs through RLS, and
-- the creation acts for auth.uid().
create function aijobs_admit_creations(p_max_in_flight integer, p_adding integer)
returns uuid
language plpgsql
set search_path = public, pg_temp
as $$
declare
    v_user      uuid := aijobs_acting_user(null);
    v_in_flight bigint;
begin
    perform pg_advisory_xact_lock(hashtextextended('aijobs.api.create:' || v_user::text, 0));
    select count(*) into v_in_flight from jobs j
    where j.user_id = v_user and j.status in ('pending', 'processing');
    if v_in_flight + p_adding > p_max_in_flight then
        raise exception '% of your jobs are pending or processing and % more would pass the limit of %',
                v_in_flight, p_adding, p_max_in_flight
            using errcode = 'AJ006',
                  detail = json_build_object('in_flight', v_in_flight, 'limit', p_max_in_flight)::text;
    end if;
    return v_user;
end
$$;

create or replace function create_job_within_cap(
    p_max_in_flight    integer,
    p_type             text,
    p_payload          jsonb,
    p_priority         smallint default 0,
    p_run_at           timestamptz default null,
    p_max_attempts     integer default 4,
    p_idempotency_key  text default null,
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
    return query select * from create_credit_consuming_job(
        aijobs_admit_creations(p_max_in_flight, 1),
        p_type, p_payload, p_priority, p_run_at, p_max_attempts, p_idempotency_key, p_retry_of
    );
end
$$;

create function create_jobs_within_cap(
    p_max_in_flight integer,
    p_types         text[],
    p_payloads      jsonb[],
    p_priorities    smallint[] default null,
    p_run_ats       timestamptz[] default null,
    p_max_attempts  integer[] default null
)
returns table (
    id uuid, status job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz
)
language plpgsql
set search_path = public, pg_temp
as $$
begin
    return query select * from create_credit_consuming_jobs(
        aijobs_admit_creations(p_max_in_flight, coalesce(cardinality(p_types), 0)),
        p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts
    );
end
$$;

revoke all on function aijobs_admit_creations(integer, integer) from public;
grant execute on function aijobs_admit_creations(integer, integer) to authenticated, service_role;
revoke all on function create_jobs_within_cap(integer, text[], jsonb[], smallint[], timestamptz[], integer[])
    from public;
grant execute on function create_jobs_within_cap(integer, text[], jsonb[], smallint[], timestamptz[], integer[])
    to authenticated, service_role;
