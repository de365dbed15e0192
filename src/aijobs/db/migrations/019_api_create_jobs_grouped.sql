-- Several API requests' creations in one statement and one commit (group commit).
--
-- Under load, an API process has many `POST /api/jobs` (without an Idempotency-Key) waiting
-- on the database at once, each a round trip and a commit of its own. On the benchmark
-- machine the send that wakes the server was a quarter of the API's CPU per request, and
-- each commit waits for its own WAL flush. The API's creation batcher
-- (aijobs/api/grouped_creation.py) sends the requests that arrive while a statement is in
-- flight together, through this function.
--
-- Each element is exactly one api_create_job (013): the role switches to `authenticated`
-- with that request's verified claims, then create_job_within_cap runs (EXECUTE checked for
-- that role, the in-flight count under RLS, the acting user from the claims, the debit). It
-- runs in a block of its own (a subtransaction), so one request's refusal (no credits, over
-- the cap, unknown type) undoes only its own job and debit, and comes back as its row's
-- err_state / err_message / err_detail, which the API raises for that request alone. The
-- others are committed together when the statement ends.
--
-- Elements are taken in the order of their user (the claims' `sub`), then of the request:
-- every element locks its user's creations (the advisory lock) and account row, and two
-- concurrent batches taking them in the same order cannot deadlock.
--
-- At most 32 elements: a transaction with more than 64 subtransactions that wrote overflows
-- the backend's cache of them, which slows every snapshot on the server until it ends.
--
-- As api_create_job, it acts for any user, so only its owner may run it. api_create_job stays:
-- API processes of the previous release call it until they are replaced.
create function api_create_jobs_grouped(
    p_claims         text[],
    p_max_in_flight  integer,
    p_types          text[],
    p_payloads       jsonb[],
    p_priorities     smallint[],
    p_run_ats        timestamptz[],
    p_max_attempts   integer[],
    p_retry_ofs      uuid[]
)
returns table (
    ord integer, id uuid, status job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz, err_state text, err_message text, err_detail text
)
language plpgsql
set search_path = public, pg_temp
as $$
declare
    v_i   integer;
    v_job record;
begin
    if coalesce(cardinality(p_claims), 0) > 32 then
        raise exception 'at most 32 creations in one group, not %', cardinality(p_claims)
            using errcode = 'AJ005';
    end if;
    for v_i in
        select u.ord from unnest(p_claims) with ordinality as u(claims, ord)
        order by u.claims::jsonb ->> 'sub', u.ord
    loop
        ord := v_i;
        err_state := null;
        err_message := null;
        err_detail := null;
        begin
            perform set_config('role', 'authenticated', true),
                    set_config('request.jwt.claims', p_claims[v_i], true);
            select * into v_job from create_job_within_cap(
                p_max_in_flight, p_types[v_i], p_payloads[v_i], p_priorities[v_i], p_run_ats[v_i],
                p_max_attempts[v_i], null, p_retry_ofs[v_i]
            );
            id := v_job.id;
            status := v_job.status;
            cost := v_job.cost;
            balance := v_job.balance;
            created := v_job.created;
            created_at := v_job.created_at;
            run_at := v_job.run_at;
        exception when others then
            get stacked diagnostics
                err_state = returned_sqlstate, err_message = message_text, err_detail = pg_exception_detail;
            id := null;
            status := null;
            cost := null;
            balance := null;
            created := null;
            created_at := null;
            run_at := null;
        end;
        return next;
    end loop;
end
$$;

revoke all on function
    api_create_jobs_grouped(text[], integer, text[], jsonb[], smallint[], timestamptz[], integer[], uuid[])
    from public, anon, authenticated, service_role;
