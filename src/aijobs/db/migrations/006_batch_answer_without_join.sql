-- Migration 006: a batch's answer is made from what create_jobs inserted instead of the rows
-- read back from the insert. The planner cannot know a batch's size inside the function and
-- joined the two lists of new rows by comparing each with every other: a batch of 3,000 spent
-- 0.9 s of its 1 s there, and one of 10,000 about ten times that. Nothing else changes:
-- checks, charges, turns and answers are as before. CREATE OR REPLACE keeps the function's
-- owner, settings and grants. ../schema.sql shows the result.

create or replace function aijobs.create_jobs(
    p_user_id           uuid,
    p_types             text[],
    p_payloads          jsonb[],
    p_priorities        smallint[] default null,
    p_run_ats           timestamptz[] default null,
    p_max_attempts      integer[] default null,
    p_idempotency_keys  text[] default null,
    p_retry_ofs         uuid[] default null,
    p_quota             boolean default false
)
returns table (
    id uuid, status aijobs.job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz
)
language plpgsql
security definer
set search_path = aijobs, pg_temp
-- With array arguments the planner kept choosing custom plans, so every call planned its
-- statements again; the generic plans are right for any batch size.
set plan_cache_mode = force_generic_plan
as $$
declare
    v_trusted  boolean := aijobs.caller_is_trusted();
    v_user     uuid := aijobs.acting_user(p_user_id, v_trusted);
    v_n        integer := coalesce(cardinality(p_types), 0);
    -- A batch of one, the common call, takes scalar statements: the set-shaped ones below
    -- cost about twice as much for a single row.
    v_one      boolean := v_n = 1;
    v_bad_i    integer;
    v_first    integer;
    v_problem  text[];
    v_cost     integer;
    v_enabled  boolean;
    v_existing uuid;
    v_job      record;
    v_balance  bigint;
    v_limit    integer;
    v_new      integer;
    v_total    bigint;
    v_active   bigint;
    v_clock    bigint;
    v_step     bigint;
    v_tag      bigint;
begin
    if v_n = 0 or v_n > 10000 then
        raise exception 'a creation takes 1 to 10000 jobs, not %', v_n using errcode = 'AJ005',
            detail = json_build_object('field', 'jobs', 'reason', 'must hold 1 to 10000 jobs')::text;
    end if;
    if coalesce(cardinality(p_payloads), -1) <> v_n
       or coalesce(cardinality(p_priorities), v_n) <> v_n
       or coalesce(cardinality(p_run_ats), v_n) <> v_n
       or coalesce(cardinality(p_max_attempts), v_n) <> v_n
       or coalesce(cardinality(p_idempotency_keys), v_n) <> v_n
       or coalesce(cardinality(p_retry_ofs), v_n) <> v_n then
        raise exception 'every array needs one element per job (%)', v_n using errcode = 'AJ005',
            detail = json_build_object('field', 'jobs', 'reason', 'every array needs one element per job')::text;
    end if;

    -- The first element with a value the table would refuse, named as the API names it.
    if v_one then
        select k.cost, k.enabled into v_cost, v_enabled from aijobs.job_types k where k.name = p_types[1];
        v_problem := aijobs.job_problem(found, v_enabled, p_payloads[1], p_priorities[1], p_run_ats[1],
                                        p_max_attempts[1], p_idempotency_keys[1]);
        if v_problem is not null then
            v_bad_i := 1;
        end if;
    else
        select t.i, p.problem into v_bad_i, v_problem
        from unnest(p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts, p_idempotency_keys)
             with ordinality as t(type, payload, priority, run_at, max_attempts, key, i)
        left join aijobs.job_types k on k.name = t.type
        cross join lateral (
            select aijobs.job_problem(k.name is not null, k.enabled, t.payload, t.priority, t.run_at,
                                      t.max_attempts, t.key) as problem
        ) p
        where p.problem is not null
        order by t.i
        limit 1;
    end if;
    if v_bad_i is not null then
        if v_problem[1] = 'type' then
            raise exception 'unknown job type: %', p_types[v_bad_i] using errcode = 'AJ001',
                detail = json_build_object('type', p_types[v_bad_i], 'index', v_bad_i - 1)::text;
        end if;
        if v_problem[1] = 'disabled' then
            raise exception 'job type % is disabled in this deployment', p_types[v_bad_i] using errcode = 'AJ007',
                detail = json_build_object('type', p_types[v_bad_i], 'index', v_bad_i - 1)::text;
        end if;
        raise exception 'jobs[%].%: %', v_bad_i - 1, v_problem[1], v_problem[2] using errcode = 'AJ005',
            detail = json_build_object(
                'field', 'jobs[' || (v_bad_i - 1) || '].' || v_problem[1], 'reason', v_problem[2],
                'index', v_bad_i - 1)::text;
    end if;
    if not v_one and p_idempotency_keys is not null then
        select d.i, d.first into v_bad_i, v_first
        from (select t.i, min(t.i) over (partition by t.key) as first
              from unnest(p_idempotency_keys) with ordinality as t(key, i) where t.key is not null) d
        where d.i > d.first
        order by d.i
        limit 1;
        if v_bad_i is not null then
            raise exception 'jobs[%].idempotency_key repeats the key of jobs[%]', v_bad_i - 1, v_first - 1
                using errcode = 'AJ005',
                      detail = json_build_object(
                          'field', 'jobs[' || (v_bad_i - 1) || '].idempotency_key',
                          'reason', 'repeats the key of jobs[' || (v_first - 1) || ']', 'index', v_bad_i - 1)::text;
        end if;
    end if;

    select a.balance into v_balance from aijobs.accounts a where a.user_id = v_user for update;
    if not found then
        raise exception 'unknown user: %', v_user using errcode = 'AJ002',
            detail = json_build_object('user_id', v_user)::text;
    end if;

    -- What the new jobs cost together; an element whose key already names a job of this
    -- user is answered with that job and costs nothing.
    if v_one then
        if p_idempotency_keys[1] is not null then
            select e.id into v_existing from aijobs.jobs e
            where e.user_id = v_user and e.idempotency_key = p_idempotency_keys[1];
        end if;
        v_new := case when v_existing is null then 1 else 0 end;
        v_total := v_new * v_cost;
    else
        select count(*), coalesce(sum(k.cost), 0) into v_new, v_total
        from unnest(p_types, p_idempotency_keys) as t(type, key)
        join aijobs.job_types k on k.name = t.type
        where t.key is null
           or not exists (select from aijobs.jobs e where e.user_id = v_user and e.idempotency_key = t.key);
    end if;

    if v_new > 0 and (p_quota or not v_trusted) then
        select s.max_jobs_in_flight_per_user into v_limit from aijobs.settings s;
        if v_limit is not null then
            select count(*) into v_active from aijobs.jobs j
            where j.user_id = v_user and j.status in ('pending', 'processing');
            if v_active + v_new > v_limit then
                raise exception '% of your jobs are pending or processing and % more would pass the limit of %',
                        v_active, v_new, v_limit
                    using errcode = 'AJ006',
                          detail = json_build_object('in_flight', v_active, 'limit', v_limit)::text;
            end if;
        end if;
    end if;

    -- The same refusal whether the id is absent or another user's, so it does not tell which.
    if p_retry_ofs is not null then
        if v_one then
            select 1 into v_bad_i
            where p_retry_ofs[1] is not null and v_new = 1
              and not exists (select from aijobs.jobs r where r.id = p_retry_ofs[1] and r.user_id = v_user);
        else
            select t.i into v_bad_i
            from unnest(p_retry_ofs, p_idempotency_keys) with ordinality as t(retry_of, key, i)
            where t.retry_of is not null
              and not exists (select from aijobs.jobs r where r.id = t.retry_of and r.user_id = v_user)
              and (t.key is null
                   or not exists (select from aijobs.jobs e where e.user_id = v_user and e.idempotency_key = t.key))
            order by t.i limit 1;
        end if;
        if found then
            raise exception 'jobs[%].retry_of must name one of your jobs', v_bad_i - 1 using errcode = 'AJ005',
                detail = json_build_object(
                    'field', 'jobs[' || (v_bad_i - 1) || '].retry_of', 'reason', 'must name one of your jobs',
                    'index', v_bad_i - 1)::text;
        end if;
    end if;

    if v_balance < v_total then
        raise exception 'insufficient credits: balance %, cost %', v_balance, v_total using errcode = 'AJ003',
            detail = json_build_object('balance', v_balance, 'cost', v_total)::text;
    end if;

    if v_new > 0 then
        update aijobs.accounts a set balance = a.balance - v_total, updated_at = now()
        where a.user_id = v_user
        returning a.balance into v_balance;

        -- Fair share (start-time fair queuing): the new jobs take the tenant's next turns,
        -- from where it left off or, if it fell behind or was idle, from the turn the queue
        -- is serving now (its earliest runnable tag; when nothing is queued, the latest turn
        -- handed out), so idle time earns no credit and a backlog earns no head start.
        select j.fair_tag into v_clock from aijobs.jobs j
        where j.status = 'pending' and j.run_at <= now()
        order by j.fair_tag, j.run_at, j.id limit 1;
        if v_clock is null then
            select max(t.last_tag) into v_clock from aijobs.tenants t;
        end if;
        -- An update first: the tenant's row exists but for its first creation, and an
        -- INSERT ... ON CONFLICT costs more than an UPDATE when it does.
        update aijobs.tenants t
            set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + v_new::bigint * (1000000 / t.weight),
                updated_at = now()
        where t.tenant = v_user
        returning t.last_tag, 1000000 / t.weight into v_tag, v_step;
        if not found then
            insert into aijobs.tenants as t (tenant, last_tag)
            values (v_user, coalesce(v_clock, 0) + v_new::bigint * 1000000)
            on conflict (tenant) do update
                set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + v_new::bigint * (1000000 / t.weight),
                    updated_at = now()
            returning t.last_tag, 1000000 / t.weight into v_tag, v_step;
        end if;
        v_tag := v_tag - v_new * v_step;
    end if;

    if v_one then
        if v_new = 0 then
            return query select e.id, e.status, e.cost, v_balance, false, e.created_at::timestamptz,
                                e.run_at::timestamptz
                         from aijobs.jobs e where e.id = v_existing;
            return;
        end if;
        insert into aijobs.jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost,
                                 idempotency_key, retry_of, fair_tag, tenant_seq)
        values (aijobs.uuid_v7(), v_user, p_types[1], p_payloads[1], coalesce(p_priorities[1], 0),
                coalesce(p_run_ats[1], now()), coalesce(p_max_attempts[1], 4), v_cost,
                p_idempotency_keys[1], p_retry_ofs[1], v_tag, v_tag)
        returning aijobs.jobs.id, aijobs.jobs.status, aijobs.jobs.created_at, aijobs.jobs.run_at into v_job;
        insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)
        values (v_user, v_job.id, 'debit', -v_cost, p_types[1]);
        -- Wake workers. Only the type travels: never payload text.
        perform pg_notify('aijobs_jobs', p_types[1]);
        return query select v_job.id, v_job.status, v_cost, v_balance, true, v_job.created_at::timestamptz,
                            v_job.run_at::timestamptz;
        return;
    end if;

    -- Ids are made first, so each new job is answered at its input position.
    return query
    with input as materialized (
        select t.i, t.type, t.payload, t.priority, t.run_at, t.max_attempts, t.key, t.retry_of, k.cost,
               (select e.id from aijobs.jobs e where t.key is not null
                   and e.user_id = v_user and e.idempotency_key = t.key) as existing
        from unnest(p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts, p_idempotency_keys,
                    p_retry_ofs)
             with ordinality as t(type, payload, priority, run_at, max_attempts, key, retry_of, i)
        join aijobs.job_types k on k.name = t.type
    ), fresh as materialized (
        select aijobs.uuid_v7() as id, row_number() over (order by input.i) - 1 as turn, input.*
        from input where input.existing is null
    ), inserted as (
        insert into aijobs.jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost,
                                 idempotency_key, retry_of, fair_tag, tenant_seq)
        select f.id, v_user, f.type, f.payload, coalesce(f.priority, 0), coalesce(f.run_at, now()),
               coalesce(f.max_attempts, 4), f.cost, f.key, f.retry_of, v_tag + f.turn * v_step,
               v_tag + f.turn * v_step
        from fresh f order by f.i
    ), debited as (
        insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)
        select v_user, f.id, 'debit', -f.cost, f.type from fresh f order by f.i
    )
    -- The new jobs' answer comes from what was inserted, not from the rows read back: the
    -- planner cannot know a batch's size here and joined the two lists by comparing every
    -- row with every other (a batch of 10,000 spent seconds there). The inserts run anyway.
    select r.id, r.status, r.cost, v_balance, r.created, r.created_at, r.run_at
    from (
        select f.id, 'pending'::aijobs.job_status as status, f.cost, true as created, now() as created_at,
               coalesce(f.run_at, now()) as run_at, f.i
        from fresh f
        union all
        select e.id, e.status, e.cost, false, e.created_at::timestamptz, e.run_at::timestamptz, input.i
        from input join aijobs.jobs e on e.id = input.existing
    ) r
    order by r.i;

    if v_new > 0 then
        -- Wake workers once per type. Only the type travels: never payload text.
        perform pg_notify('aijobs_jobs', d.type) from (select distinct unnest(p_types) as type) d;
    end if;
end
$$;
