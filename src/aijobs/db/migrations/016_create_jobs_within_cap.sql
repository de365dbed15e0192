-- The API's batch creation (POST /api/jobs/batch) under the same in-flight cap as a single
-- one (010_create_job_within_cap.sql): serialise this user's creations on the same advisory
-- lock, count their jobs in flight, and refuse (AJ006) when the batch would take them over
-- the cap, else charge and insert through create_credit_consuming_jobs. A batch is admitted
-- whole or not at all, as it is charged.
--
-- SECURITY INVOKER, like create_job_within_cap: the count sees only the caller's own jobs
-- through RLS, and the creation acts for auth.uid().
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
declare
    v_user      uuid := aijobs_acting_user(null);
    v_in_flight bigint;
    v_n         integer := coalesce(cardinality(p_types), 0);
begin
    perform pg_advisory_xact_lock(hashtextextended('aijobs.api.create:' || v_user::text, 0));
    select count(*) into v_in_flight from jobs j
    where j.user_id = v_user and j.status in ('pending', 'processing');
    if v_in_flight + v_n > p_max_in_flight then
        raise exception '% of your jobs are pending or processing; % more would pass the limit of %',
                v_in_flight, v_n, p_max_in_flight
            using errcode = 'AJ006',
                  detail = json_build_object('in_flight', v_in_flight, 'limit', p_max_in_flight)::text;
    end if;
    return query select * from create_credit_consuming_jobs(
        v_user, p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts
    );
end
$$;

revoke all on function create_jobs_within_cap(integer, text[], jsonb[], smallint[], timestamptz[], integer[])
    from public;
grant execute on function create_jobs_within_cap(integer, text[], jsonb[], smallint[], timestamptz[], integer[])
    to authenticated, service_role;
