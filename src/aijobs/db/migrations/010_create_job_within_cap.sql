-- The API's creation in one statement: serialise this user's creations, count their jobs
-- in flight, refuse over the cap (AJ006, with the count and the limit), else charge and
-- insert through create_credit_consuming_job. One round trip instead of three per request.
--
-- SECURITY INVOKER: it runs as the caller (`authenticated`), so the count sees only the
-- caller's own jobs through RLS and the creation goes through the credit function's own
-- checks (acting user = auth.uid()).
create function create_job_within_cap(
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
declare
    v_user      uuid := aijobs_acting_user(null);
    v_in_flight bigint;
begin
    perform pg_advisory_xact_lock(hashtextextended('aijobs.api.create:' || v_user::text, 0));
    select count(*) into v_in_flight from jobs j
    where j.user_id = v_user and j.status in ('pending', 'processing');
    if v_in_flight >= p_max_in_flight then
        raise exception '% of your jobs are pending or processing; the limit is %', v_in_flight, p_max_in_flight
            using errcode = 'AJ006',
                  detail = json_build_object('in_flight', v_in_flight, 'limit', p_max_in_flight)::text;
    end if;
    return query select * from create_credit_consuming_job(
        v_user, p_type, p_payload, p_priority, p_run_at, p_max_attempts, p_idempotency_key, p_retry_of
    );
end
$$;

revoke all on function create_job_within_cap(integer, text, jsonb, smallint, timestamptz, integer, text, uuid)
    from public;
grant execute on function create_job_within_cap(integer, text, jsonb, smallint, timestamptz, integer, text, uuid)
    to authenticated, service_role;
