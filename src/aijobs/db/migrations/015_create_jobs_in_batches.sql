-- Many jobs for one user in one call, charged all or nothing: River's InsertMany, Oban's
-- insert_all, procrastinate's batch defer. A shop that syncs 200 new reviews makes one
-- call instead of 200.
--
-- The same checks as create_credit_consuming_job, for the batch as a whole: every payload an
-- object (AJ005 naming the first bad index), every type known and enabled (AJ001 naming the
-- first unknown one), the account locked (AJ002), and the balance covering the sum of the
-- costs (AJ003 with that sum). A refusal raises and rolls everything back: no job, no debit.
--
-- What it writes is what N single creations write: one job row and one debit row per job
-- (the ledger stays one row per charge, so refunds, `aijobs check` and the history work
-- unchanged), and the balance lowered by the sum. The difference is the statements: set-
-- based inserts instead of one function call, one lock and one balance update per job: the
-- benchmark's batched enqueue (W1, batches of 100) went from 0.19x to 0.38x pgqueuer's.
--
-- No Idempotency-Key and no retry_of per element: those stay with the single creation.
-- Rows come back in the order of the input arrays.
create function create_credit_consuming_jobs(
    p_user_id       uuid,
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
security definer
set search_path = public, pg_temp
as $$
declare
    v_user     uuid := aijobs_acting_user(p_user_id);
    v_n        integer := coalesce(cardinality(p_types), 0);
    v_index    bigint;
    v_type     text;
    v_total    bigint;
    v_balance  bigint;
begin
    if v_n = 0 then
        raise exception 'a batch needs at least one job' using errcode = 'AJ005';
    end if;
    if coalesce(cardinality(p_payloads), 0) <> v_n
       or coalesce(cardinality(p_priorities), v_n) <> v_n
       or coalesce(cardinality(p_run_ats), v_n) <> v_n
       or coalesce(cardinality(p_max_attempts), v_n) <> v_n then
        raise exception 'every array needs one element per job (%)', v_n using errcode = 'AJ005';
    end if;

    select p.i - 1 into v_index
    from unnest(p_payloads) with ordinality as p(payload, i)
    where p.payload is null or jsonb_typeof(p.payload) <> 'object'
    order by p.i limit 1;
    if found then
        raise exception 'payload % must be a JSON object', v_index using errcode = 'AJ005',
            detail = json_build_object('index', v_index)::text;
    end if;

    select t.name into v_type
    from unnest(p_types) with ordinality as t(name, i)
    where not exists (select from job_types k where k.name = t.name and k.enabled)
    order by t.i limit 1;
    if found then
        raise exception 'unknown job type: %', v_type using errcode = 'AJ001',
            detail = json_build_object('type', v_type)::text;
    end if;

    -- The same lock as a single creation: concurrent creations for this user serialize here.
    select a.balance into v_balance from accounts a where a.user_id = v_user for update;
    if not found then
        raise exception 'unknown user: %', v_user using errcode = 'AJ002',
            detail = json_build_object('user_id', v_user)::text;
    end if;

    select sum(k.cost) into v_total from unnest(p_types) as t(name) join job_types k on k.name = t.name;
    if v_balance < v_total then
        raise exception 'insufficient credits: balance %, cost %', v_balance, v_total using errcode = 'AJ003',
            detail = json_build_object('balance', v_balance, 'cost', v_total)::text;
    end if;

    update accounts a set balance = a.balance - v_total, updated_at = now()
    where a.user_id = v_user
    returning a.balance into v_balance;

    -- Ids are made first, so each inserted row can be matched back to its input position.
    return query
    with input as materialized (
        select aijobs_uuid_v7() as id, t.i, t.type, t.payload, t.priority, t.run_at, t.max_attempts, k.cost
        from unnest(p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts)
             with ordinality as t(type, payload, priority, run_at, max_attempts, i)
        join job_types k on k.name = t.type
    ), inserted as (
        insert into jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost)
        select input.id, v_user, input.type, input.payload, coalesce(input.priority, 0),
               coalesce(input.run_at, now()), coalesce(input.max_attempts, 4), input.cost
        from input order by input.i
        returning jobs.id, jobs.status, jobs.cost, jobs.created_at, jobs.run_at
    ), debited as (
        insert into credit_ledger (user_id, job_id, kind, amount, note)
        select v_user, input.id, 'debit', -input.cost, input.type from input order by input.i
    )
    select j.id, j.status, j.cost, v_balance, true, j.created_at, j.run_at
    from inserted j join input on input.id = j.id
    order by input.i;

    -- Wake workers once per type in the batch. Only the type travels: never payload text.
    perform pg_notify('aijobs_jobs', t.name) from (select distinct unnest(p_types) as name) t;
end
$$;

revoke all on function create_credit_consuming_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[])
    from public;
grant execute on function create_credit_consuming_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[])
    to authenticated, service_role;
