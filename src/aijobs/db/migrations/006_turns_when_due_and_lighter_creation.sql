-- Migration 006: jobs not due yet wait outside the fair-share order, and a creation does
-- less work in the database. ../schema.sql shows the result.
--
-- A job created for later (run_at in the future) took its fair-share turn at creation, so
-- it sat near the head of the claim's index until it came due: every claim, and every
-- creation's reading of the queue's clock, stepped over all such jobs (10,000 scheduled
-- jobs made the first claim take 14 ms; the old release's claim, ordered by run_at, never
-- met them). Now:
-- - `jobs.fair_tag` and `jobs.tenant_seq` are null until the job is due (no default of 0:
--   a row written directly gets its turn the same way); `jobs_turn_whole` keeps them null
--   together.
-- - `aijobs.take_turns` hands out a tenant's next turns (what create_jobs did inline), and
--   `aijobs.turn_due_jobs`, called first by `claim_jobs`, gives turns to the jobs that have
--   come due without one, each tenant's in the order they came due.
-- - `create_jobs` gives turns to its due jobs only; `claim_jobs` and the clock's reading walk
--   only jobs with a turn, so they stop at the first job without one; `finish_attempts`
--   takes the turn away from a retry set to wait (it takes a new one when due);
--   `expedite_job` gives a job without a turn the head's.
--
-- A single creation did about half as much work again as the release before (counted in
-- instructions, see docs/benchmarks.md). Of that:
-- - PostgreSQL reads a table's CHECK constraints from their stored text at every statement
--   that writes the table, and a creation writes an account and a tenant: `accounts.balance`,
--   `tenants.weight` and `tenants.max_running` are checked by domains instead
--   (`credit_balance`, `tenant_weight`, `running_limit`), whose checks are kept ready.
-- - `json_problem` finds a long number with an expression instead of a query (a query costs
--   a plan's start at every call, and the payload is checked twice per job).
-- - `caller_is_trusted` compares the caller with current_user (its callers' owner) instead of
--   querying the schema's owner.
-- - `create_jobs` does not call `acting_user` for a trusted caller that names the user, and
--   skips the retry_of check of a single job that names none.

create domain aijobs.credit_balance as bigint check (value >= 0);
create domain aijobs.tenant_weight as integer check (value between 1 and 1000);
create domain aijobs.running_limit as integer check (value > 0);
alter table aijobs.accounts drop constraint accounts_balance_check,
    alter column balance type aijobs.credit_balance;
alter table aijobs.tenants drop constraint tenants_weight_check, drop constraint tenants_max_running_check,
    alter column weight type aijobs.tenant_weight, alter column max_running type aijobs.running_limit;

alter table aijobs.jobs alter column fair_tag drop not null, alter column fair_tag drop default,
    alter column tenant_seq drop not null, alter column tenant_seq drop default;
-- Jobs not due yet give up the turns they were given at creation, and take new ones when due.
update aijobs.jobs set fair_tag = null, tenant_seq = null where status = 'pending' and run_at > now();
alter table aijobs.jobs add constraint jobs_turn_whole check ((fair_tag is null) = (tenant_seq is null));

-- The next `p_n` turns of a tenant in the fair share (start-time fair queuing): the first
-- tag and the step between them. A tenant goes on from where it left off or, if it fell
-- behind or was idle, from the turn the queue is serving now (its earliest turn still due;
-- when none is, the latest turn handed out), so idle time earns no credit and a backlog earns
-- no head start. Locks the tenant's row until the transaction ends: the turns of one tenant
-- are handed out one caller at a time.
create function aijobs.take_turns(p_tenant uuid, p_n integer, out first_tag bigint, out step bigint)
language plpgsql
as $$
declare
    v_clock bigint;
begin
    if p_tenant is null then
        raise exception 'tenant is required' using errcode = 'AJ005',
            detail = pg_catalog.json_build_object('field', 'tenant', 'reason', 'is required')::text;
    elsif p_n is null or p_n not between 1 and 10000 then
        raise exception 'n must be between 1 and 10000' using errcode = 'AJ005',
            detail = pg_catalog.json_build_object('field', 'n', 'reason', 'must be between 1 and 10000')::text;
    end if;
    -- No SET search_path (a cost at every call): called from functions that pin it, and
    -- every name is qualified all the same.
    select j.fair_tag into v_clock from aijobs.jobs j
    where j.status = 'pending' and j.fair_tag is not null and j.run_at <= now()
    order by j.fair_tag, j.run_at, j.id limit 1;
    if v_clock is null then
        select max(t.last_tag) into v_clock from aijobs.tenants t;
    end if;
    -- An update first: the tenant's row exists but for its first turn, and an
    -- INSERT ... ON CONFLICT costs more than an UPDATE when it does.
    update aijobs.tenants t
        set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + p_n::bigint * (1000000 / t.weight),
            updated_at = now()
    where t.tenant = p_tenant
    returning t.last_tag, 1000000 / t.weight into first_tag, step;
    if not found then
        insert into aijobs.tenants as t (tenant, last_tag)
        values (p_tenant, coalesce(v_clock, 0) + p_n::bigint * 1000000)
        on conflict (tenant) do update
            set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + p_n::bigint * (1000000 / t.weight),
                updated_at = now()
        returning t.last_tag, 1000000 / t.weight into first_tag, step;
    end if;
    first_tag := first_tag - p_n * step;
end
$$;

-- Give a turn to each job that has come due without one (created for later, retrying after
-- a delay, or written directly): each tenant's in the order they came due, from its next
-- turns (take_turns). The claim calls this first; at most `p_limit` jobs a call, so a large
-- batch coming due at once is turned over the next claims. Tenants' rows are locked in
-- tenant order, so two claims doing this cannot deadlock.
create function aijobs.turn_due_jobs(p_limit integer)
returns integer
language plpgsql
as $$
declare
    v_group  record;
    v_turn   record;
    v_n      integer := 0;
begin
    if p_limit is null or p_limit not between 1 and 10000 then
        raise exception 'limit must be between 1 and 10000' using errcode = 'AJ005',
            detail = pg_catalog.json_build_object('field', 'limit', 'reason', 'must be between 1 and 10000')::text;
    end if;
    for v_group in
        select d.tenant, array_agg(d.id order by d.run_at, d.id) as ids
        from (select j.id, j.tenant, j.run_at from aijobs.jobs j
              where j.status = 'pending' and j.fair_tag is null and j.run_at <= now()
              order by j.fair_tag, j.run_at, j.id
              limit p_limit
              for update skip locked) d
        group by d.tenant
        order by d.tenant
    loop
        select t.first_tag, t.step into v_turn from aijobs.take_turns(v_group.tenant, cardinality(v_group.ids)) t;
        update aijobs.jobs j
        set fair_tag = v_turn.first_tag + (u.k - 1) * v_turn.step,
            tenant_seq = v_turn.first_tag + (u.k - 1) * v_turn.step
        from unnest(v_group.ids) with ordinality as u(id, k)
        where j.id = u.id;
        v_n := v_n + cardinality(v_group.ids);
    end loop;
    return v_n;
end
$$;

-- Why a JSON value may not be stored as a payload or result, or null when it may. A
-- payload is read back by every worker that claims it and every reader that lists it, so
-- what Python, JavaScript and the claim statement cannot read must never be stored:
-- at most 65536 bytes as text, nested at most 32 levels below the top object, and every
-- number at most 32 characters as PostgreSQL writes it (1e400 is 401 digits).
create or replace function aijobs.json_problem(p_value jsonb) returns text
language plpgsql immutable parallel safe
as $$
begin
    -- PL/pgSQL rather than SQL: its plans are kept for the session, where a SQL function that
    -- cannot be inlined is planned again at every call. No SET search_path (that costs every
    -- call too): the calls are qualified with pg_catalog instead.
    if p_value is null then
        return 'is required';
    elsif pg_catalog.jsonb_typeof(p_value) <> 'object' then
        return 'must be a JSON object';
    elsif pg_catalog.octet_length(p_value::text) > 65536 then
        return 'is ' || pg_catalog.octet_length(p_value::text) || ' bytes as JSON; the limit is 65536';
    elsif pg_catalog.jsonb_path_exists(p_value, 'strict $.**{33 to last}') then
        return 'nests deeper than 32 levels';
    -- The numbers as one JSON array's text, "[1, 2.5, ...]": a number longer than 32
    -- characters is a run of 33 characters none of which is a bracket, a comma or a space.
    -- An expression, not a query over the numbers: a query costs a plan's start at every call.
    elsif pg_catalog.jsonb_path_query_array(p_value, 'strict $.** ? (@.type() == "number")')::text
          operator(pg_catalog.~) '[^], []{33}' then
        return 'holds a number longer than 32 characters';
    end if;
    return null;
end
$$;

-- Whether the role calling in may act for any user: a member of `service_role` or of the
-- role that owns aijobs (the role that migrates, which the worker, CLI and API use). Decided
-- by membership: a custom role that merely inherits `authenticated` acts only for itself.
-- Called only from SECURITY DEFINER functions (and executable by the owner alone), where
-- current_user is that owner: so the caller is read from the `role` setting (SET ROLE, as
-- PostgREST and the API use), else the session's user, and compared with current_user (a
-- query of the schema's owner would cost a plan's start at every call).
create or replace function aijobs.caller_is_trusted() returns boolean
language plpgsql stable
as $$
declare
    v_caller name := coalesce(
        nullif(nullif(pg_catalog.current_setting('role', true), 'none'), ''), session_user::text);
begin
    -- Called only from functions that pin search_path; calls are qualified all the same.
    return pg_catalog.pg_has_role(v_caller, 'service_role', 'MEMBER')
        or pg_catalog.pg_has_role(v_caller, current_user, 'MEMBER');
end
$$;

-- Create jobs for one user, charged all or nothing: a single job is a batch of one. Element
-- i of every array is job i; null arrays (or elements) take the defaults. Rows come back in
-- input order; `created` is false for an element whose idempotency key already named a job
-- of this user (that job is returned and nothing is charged for it).
--
-- Every element is checked before anything is written (AJ005 naming `jobs[i].<field>`), the
-- user's account row is locked (concurrent creations for one user serialise here, so the
-- balance and the quota cannot be raced), then the quota (AJ006), retry_of (a job of this
-- user), and the balance for the sum (AJ003). Users' own calls are always held to the
-- deployment's in-flight quota; a trusted caller (the API acting for a user) asks for it
-- with p_quota.
--
-- The jobs take their tenant's turns and count against its limit on running jobs: a trusted
-- caller's p_tenant (the API reads it from the verified token), else the user; a user's own
-- call gets its tenant from its JWT (aijobs.acting_tenant) and may not choose another.
create or replace function aijobs.create_jobs(
    p_user_id           uuid,
    p_types             text[],
    p_payloads          jsonb[],
    p_priorities        smallint[] default null,
    p_run_ats           timestamptz[] default null,
    p_max_attempts      integer[] default null,
    p_idempotency_keys  text[] default null,
    p_retry_ofs         uuid[] default null,
    p_quota             boolean default false,
    p_tenant            uuid default null
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
    -- The trusted cases inline: the API's creations pay for no call and no settings read.
    v_user     uuid := case when v_trusted and p_user_id is not null then p_user_id
                            else aijobs.acting_user(p_user_id, v_trusted) end;
    v_tenant   uuid := case when v_trusted then coalesce(p_tenant, v_user)
                            else aijobs.acting_tenant(p_tenant, v_user) end;
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
    v_due      integer;
    v_total    bigint;
    v_active   bigint;
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
        v_due := case when coalesce(p_run_ats[1] <= now(), true) then v_new else 0 end;
        v_total := v_new * v_cost;
    else
        select count(*), count(*) filter (where coalesce(t.run_at <= now(), true)), coalesce(sum(k.cost), 0)
        into v_new, v_due, v_total
        from unnest(p_types, p_idempotency_keys, p_run_ats) as t(type, key, run_at)
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
    if p_retry_ofs is not null and (not v_one or p_retry_ofs[1] is not null) then
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
    end if;
    -- The due ones take the tenant's next turns; one for later takes its turn when it is due.
    if v_due > 0 then
        select t.first_tag, t.step into v_tag, v_step from aijobs.take_turns(v_tenant, v_due) t;
    end if;

    if v_one then
        if v_new = 0 then
            return query select e.id, e.status, e.cost, v_balance, false, e.created_at::timestamptz,
                                e.run_at::timestamptz
                         from aijobs.jobs e where e.id = v_existing;
            return;
        end if;
        insert into aijobs.jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost,
                                 idempotency_key, retry_of, fair_tag, tenant_seq, tenant)
        values (aijobs.uuid_v7(), v_user, p_types[1], p_payloads[1], coalesce(p_priorities[1], 0),
                coalesce(p_run_ats[1], now()), coalesce(p_max_attempts[1], 4), v_cost,
                p_idempotency_keys[1], p_retry_ofs[1], v_tag, v_tag, v_tenant)
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
        select aijobs.uuid_v7() as id,
               case when coalesce(input.run_at <= now(), true)
                    then row_number() over (partition by coalesce(input.run_at <= now(), true) order by input.i) - 1
               end as turn,
               input.*
        from input where input.existing is null
    ), inserted as (
        insert into aijobs.jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost,
                                 idempotency_key, retry_of, fair_tag, tenant_seq, tenant)
        select f.id, v_user, f.type, f.payload, coalesce(f.priority, 0), coalesce(f.run_at, now()),
               coalesce(f.max_attempts, 4), f.cost, f.key, f.retry_of, v_tag + f.turn * v_step,
               v_tag + f.turn * v_step, v_tenant
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

-- Move one pending job ahead of every other tenant's: its tenant takes the turn before the
-- queue's earliest, and the job is first in its tenant's own order (priority 100, before the
-- tenant's other jobs), due now. What users may not do themselves (their priority orders only
-- their own jobs), so owner and service_role only, checked here as well as by the grant (it
-- runs as its owner). The tenant's limit on running jobs still applies. No row when the job
-- is not pending (or does not exist).
create or replace function aijobs.expedite_job(p_job_id uuid)
returns table (id uuid, fair_tag bigint)
language plpgsql
security definer
set search_path = aijobs, pg_temp
as $$
declare
    v_head    bigint;
    v_seq     bigint;
    v_tenant  uuid;
begin
    if not aijobs.caller_is_trusted() then
        raise exception 'only the service role may move a job ahead of other tenants' using errcode = 'AJ004';
    end if;
    if p_job_id is null then
        raise exception 'job id is required' using errcode = 'AJ005',
            detail = json_build_object('field', 'id', 'reason', 'is required')::text;
    end if;
    select j.tenant into v_tenant from jobs j where j.id = p_job_id and j.status = 'pending' for update;
    if not found then
        return;
    end if;
    select j.fair_tag into v_head from jobs j
    where j.status = 'pending' and j.fair_tag is not null and j.run_at <= now()
    order by j.fair_tag, j.run_at, j.id limit 1;
    select min(j.tenant_seq) into v_seq from jobs j where j.tenant = v_tenant and j.status = 'pending';
    return query
    update jobs j
    -- A job without a turn yet takes the head's; with nothing due to stand before, it keeps
    -- none, and the next claim gives it one (it is due now).
    set fair_tag = least(j.fair_tag, v_head - 1),
        tenant_seq = case when least(j.fair_tag, v_head - 1) is not null
                          then coalesce(least(j.tenant_seq, v_seq - 1), v_head - 1) end,
        priority = 100,
        run_at = least(j.run_at, now()),
        updated_at = now()
    where j.id = p_job_id and j.status = 'pending'
    returning j.id, j.fair_tag;
end
$$;

-- Claim up to `limit` runnable jobs for one worker in one statement, fairly between tenants:
-- the turns are the runnable jobs with the earliest fair-share tags (create_jobs gives each
-- tenant's jobs turns spaced by its weight, so tenants with work take turns), and a
-- tenant's turns run that tenant's own best jobs (priority, then creation), so priority orders
-- a tenant's jobs and never moves them ahead of another tenant's. A tenant with a limit on
-- running jobs gets no more turns than its limit leaves (claim_room), and while it is at its
-- limit its jobs are passed over, so it holds back no one. SKIP LOCKED lets many
-- workers claim at once without waiting on each other. The attempt's row is written when it
-- ends; until then the job row names it: lease_token, lease_owner, attempts and
-- attempt_started_at. Jobs of a paused type are passed over: they keep their turns and wait.
--
-- A function, so that its plan is made once per connection (generic, `plan_cache_mode`)
-- instead of at every claim: a custom plan of this statement took longer to make than the
-- claim took to run. It holds through PgBouncer and Supavisor in transaction mode, which
-- forbid the client's own prepared statements. Without JIT: the generic plan cannot know the
-- limit, so its cost grows with the backlog, and compiling at every claim would cost more
-- than the claim. Without sorts where an index gives the order: planned for a tenth of the
-- backlog (what PostgreSQL assumes of an unknown limit), beside a long history it read every
-- pending job and sorted them instead of walking the fair-share index to the limit.
-- Owner and service_role only.
create or replace function aijobs.claim_jobs(p_worker_id text, p_limit integer, p_lease_seconds double precision)
returns table (
    id uuid, type text, payload aijobs.job_payload, attempts aijobs.job_attempt_count,
    max_attempts aijobs.job_max_attempts, lease_token bigint, waited_seconds double precision, cost integer
)
language plpgsql
set plan_cache_mode = force_generic_plan
set jit = off
set enable_sort = off
as $$
#variable_conflict use_column
begin
    if p_worker_id is null or length(p_worker_id) not between 1 and 200 then
        raise exception 'worker_id must be 1-200 characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'worker_id', 'reason', 'must be 1-200 characters')::text;
    elsif p_limit is null or p_limit not between 1 and 10000 then
        raise exception 'limit must be between 1 and 10000' using errcode = 'AJ005',
            detail = json_build_object('field', 'limit', 'reason', 'must be between 1 and 10000')::text;
    elsif p_lease_seconds is null or not (p_lease_seconds > 0 and p_lease_seconds <= 86400) then
        raise exception 'lease_seconds must be more than 0 and at most 86400' using errcode = 'AJ005',
            detail = json_build_object('field', 'lease_seconds',
                                       'reason', 'must be more than 0 and at most 86400')::text;
    end if;
    -- Most claims find no job come due without a turn: one probe of the index, then nothing.
    -- (Ordered, so that it is that index: as an EXISTS it may walk another, job by job.) Here,
    -- not inside turn_due_jobs: the call alone costs a claim about half what the probe saves.
    if (select j.id from aijobs.jobs j
        where j.status = 'pending' and j.fair_tag is null and j.run_at <= now()
        order by j.fair_tag, j.run_at, j.id limit 1) is not null then
        perform aijobs.turn_due_jobs(p_limit);
    end if;
    return query
        with paused as (
            -- Read once per claim (a handful of rows), then an array test per candidate row: nothing
            -- paused costs nothing, and a job_types join per row would add a lookup to every claim.
            -- The test sits in a coalesce (a no-op: neither side is null) for the planner's sake: it
            -- estimates `<> all(array it cannot see)` as ten `<>` tests in a row, expects a tenth of
            -- the pending jobs to pass and would rather sort another index's rows than walk the
            -- fair-share one; a coalesce it estimates at one half.
            select coalesce(array_agg(name), '{}') as types from aijobs.job_types where paused
        ), limits as (
            -- Without any limit (the default) this one settings row and a probe of an empty index
            -- are all the claim reads beyond the jobs: the steps below that need a limit are skipped.
            select s.max_running_per_tenant as per_tenant,
                   s.max_running_per_tenant is not null
                   or exists (select from aijobs.tenants t where t.max_running is not null)
                   or k.any_type_limit as any_limit,
                   k.any_type_limit
            from aijobs.settings s
            cross join (select exists (select from aijobs.job_types x where x.max_running_per_tenant is not null)
                               as any_type_limit) k
        ), full_tenants as (
            -- At their limit by this statement's snapshot: enough to pass their jobs over; claim_room
            -- decides exactly.
            select r.tenant
            from (select j.tenant, count(*) as running from aijobs.jobs j
                  where j.status = 'processing' and (select l.any_limit from limits l)
                  group by j.tenant) r
            where r.running >= coalesce((select t.max_running from aijobs.tenants t where t.tenant = r.tenant),
                                        (select l.per_tenant from limits l))
        ), full_pairs as (
            -- Tenants at a type's own limit on running jobs per tenant, by this snapshot: their
            -- jobs of that type are passed over; claim_type_room decides exactly.
            select j.tenant, j.type
            from aijobs.jobs j join aijobs.job_types k on k.name = j.type
            where j.status = 'processing' and k.max_running_per_tenant is not null
              and (select l.any_type_limit from limits l)
            group by j.tenant, j.type, k.max_running_per_tenant
            having count(*) >= k.max_running_per_tenant
        ), turns as (
            -- Two arms, of which only one runs (each opens with a test of the statement's own, done
            -- once): with nothing paused and no tenant at its limit, the usual case, the fair-share
            -- index alone, without a filter whose selectivity the planner cannot know (with one
            -- tenant or one type in the statistics it took `<> all(...)` to pass nothing and sorted
            -- every pending job); otherwise the same walk, passing those jobs over.
            select * from (
                select id, tenant, fair_tag from aijobs.jobs
                where status = 'pending' and fair_tag is not null and run_at <= now()
                  and (select cardinality(p.types) = 0 from paused p)
                  and not exists (select from full_tenants)
                  and not exists (select from full_pairs)
                order by fair_tag, run_at, id
                limit p_limit
                for update skip locked
            ) plain
            union all
            select * from (
                select id, tenant, fair_tag from aijobs.jobs
                where status = 'pending' and fair_tag is not null and run_at <= now()
                  and not ((select cardinality(p.types) = 0 from paused p) and not exists (select from full_tenants)
                           and not exists (select from full_pairs))
                  and coalesce(type <> all((select types from paused)::text[]), true)
                  and coalesce(tenant <> all(array(select f.tenant from full_tenants f)), true)
                  and not exists (select from full_pairs f where f.tenant = jobs.tenant and f.type = jobs.type)
                order by fair_tag, run_at, id
                limit p_limit
                for update skip locked
            ) passing_over
        ), turn_counts as (
            -- Through arrays, so the planner counts a few tenants rather than its default of 200
            -- groups: its estimate of the whole claim then stays small, and with it the claim's cost
            -- under the threshold where PostgreSQL would compile it (JIT) at every execution.
            select array_agg(g.tenant) as tenants, array_agg(g.n)::integer[] as ns
            from (select tenant, count(*) as n from turns group by tenant) g
        ), tenants as (
            select u.tenant, u.n
            from turn_counts a cross join lateral unnest(a.tenants, a.ns) as u(tenant, n)
            where not coalesce((select l.any_limit from limits l), false)
            union all
            select r.tenant, r.n
            from aijobs.claim_room((select a.tenants from turn_counts a), (select a.ns from turn_counts a)) r
            where coalesce((select l.any_limit from limits l), false)
        ), picked as (
            select b.id, b.tenant, b.fair_tag, b.type, b.priority, b.tenant_seq from tenants t
            cross join lateral (
                select j.id, j.tenant, j.fair_tag, j.type, j.priority, j.tenant_seq from aijobs.jobs j
                where j.tenant = t.tenant and j.status = 'pending' and j.tenant_seq is not null
                  and j.run_at <= now()
                  and coalesce(j.type <> all((select types from paused)::text[]), true)
                  and not exists (select from full_pairs f where f.tenant = j.tenant and f.type = j.type)
                order by j.priority desc, j.tenant_seq, j.run_at
                limit t.n
                for update skip locked
            ) b
        ), kept as (
            -- With a type's own limit per tenant somewhere: what claim_type_room leaves of each
            -- tenant's picks of a limited type, its best first; the rest stay pending. Without,
            -- every pick.
            select p.id, p.tenant, p.fair_tag from picked p
            where not coalesce((select l.any_type_limit from limits l), false)
            union all
            select p.id, p.tenant, p.fair_tag
            from (select p.*, row_number() over (partition by p.tenant, p.type
                                                 order by p.priority desc, p.tenant_seq, p.id) as k
                  from picked p) p
            left join (
                select r.tenant, r.type, r.n
                from (select array_agg(g.tenant) as tenants, array_agg(g.type) as types,
                             array_agg(g.n)::integer[] as ns
                      from (select tenant, type, count(*) as n from picked group by tenant, type) g) a
                cross join lateral aijobs.claim_type_room(a.tenants, a.types, a.ns) r
            ) r on r.tenant = p.tenant and r.type = p.type
            where coalesce((select l.any_type_limit from limits l), false) and (r.n is null or p.k <= r.n)
        ), displaced as (
            -- A turn whose own job stays (one of higher priority ran in its place) takes over that
            -- job's later tag, so the tenant keeps exactly one turn per pending job; tenant_seq
            -- keeps the job's place in its tenant's own order.
            select x.id, y.fair_tag
            from (select t.id, t.tenant, row_number() over (partition by t.tenant order by t.fair_tag, t.id) as r
                  from turns t where not exists (select from kept p where p.id = t.id)) x
            join (select p.tenant, p.fair_tag, row_number() over (partition by p.tenant order by p.fair_tag, p.id) as r
                  from kept p where not exists (select from turns t where t.id = p.id)) y
              on y.tenant = x.tenant and y.r = x.r
        ), moved as (
            update aijobs.jobs j set fair_tag = d.fair_tag
            from displaced d
            where j.id = any(array(select id from displaced)) and j.id = d.id
        ), claimed as (
            update aijobs.jobs j
            set status = 'processing',
                attempts = j.attempts + 1,
                lease_token = nextval('aijobs.job_lease_seq'),
                lease_owner = p_worker_id,
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                attempt_started_at = now(),
                started_at = coalesce(j.started_at, now()),
                updated_at = now()
            -- `= any(array(...))` keeps this a primary-key lookup per claimed row; a join here
            -- lets the planner hash the whole table once history grows.
            where j.id = any(array(select id from kept))
            returning j.id, j.type, j.payload, j.attempts, j.max_attempts, j.lease_token, j.run_at, j.cost,
                      j.fair_tag
        )
        -- The columns of `ClaimedJob`, in its order (rows are built positionally). The time the
        -- job waited is measured here, by the database clock (`now()` is the claim's start).
        select id, type, payload, attempts, max_attempts, lease_token,
               extract(epoch from now() - run_at)::float8 as waited_seconds, cost
        from claimed
        order by fair_tag, id;
end
$$;

-- End many attempts in one statement. Each row names the job, the lease token it claimed
-- with (the fence: a write whose token is no longer current changes nothing), the next
-- status and what to record. `give_back` returns the attempt to the budget (graceful
-- shutdown, rate limits). Refunds follow from the status change (trigger), at most once.
-- A cancel accepted while the attempt was ending wins over every way back to pending
-- (retry, rate limit, hand-back): such a job ends `cancelled` instead, so it neither runs
-- again nor keeps its charge. A completed or failed attempt keeps its own ending.
-- The attempt rows of the writes that won are inserted here, from what the update returns
-- (RETURNING reads the `done` row too: no join of the two lists).
-- Answers each write that won, by job id and lease token (one batch may end two attempts
-- of one job: a stale one, fenced out, and the current one), with the status it wrote,
-- which is not always the status it was given (`cancelled` above): the worker logs and
-- counts what was written.
--
-- A function for the same reasons as claim_jobs. Owner and service_role only.
create or replace function aijobs.finish_attempts(p_worker_id text, p_rows jsonb)
returns table (id uuid, lease_token bigint, status text)
language plpgsql
set plan_cache_mode = force_generic_plan
set jit = off
as $$
#variable_conflict use_column
begin
    if p_worker_id is null or length(p_worker_id) not between 1 and 200 then
        raise exception 'worker_id must be 1-200 characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'worker_id', 'reason', 'must be 1-200 characters')::text;
    elsif p_rows is null or jsonb_typeof(p_rows) <> 'array' then
        raise exception 'rows must be a JSON array' using errcode = 'AJ005',
            detail = json_build_object('field', 'rows', 'reason', 'must be a JSON array')::text;
    end if;
    return query
        with done as (
            select * from jsonb_to_recordset(p_rows::jsonb) as d(
                id uuid, lease_token bigint, status aijobs.job_status, outcome text, result jsonb, error text,
                retry_in real, give_back boolean, provider text, model text, request_id text,
                latency_ms real, input_tokens integer, output_tokens integer, reasoning_tokens integer,
                cost_usd numeric
            )
        ), finished as (
            update aijobs.jobs j
            -- Every expression here reads the row as it was: j.cancel_requested is the request
            -- this write clears.
            set status = case when d.status = 'pending' and j.cancel_requested then 'cancelled'::aijobs.job_status
                              else d.status end,
                result = case when d.status = 'completed' then d.result else j.result end,
                error = case when d.status = 'pending' and j.cancel_requested
                             then 'cancelled while running' || coalesce(' (the attempt ended: ' || d.error || ')', '')
                             else d.error end,
                attempts = j.attempts - (case when coalesce(d.give_back, false) then 1 else 0 end),
                run_at = case when d.status = 'pending' and not j.cancel_requested
                              then now() + make_interval(secs => coalesce(d.retry_in, 0))
                              else j.run_at end,
                -- A retry after a delay is not due: it takes a new turn when it is.
                fair_tag = case when d.status = 'pending' and coalesce(d.retry_in, 0) > 0 then null
                                else j.fair_tag end,
                tenant_seq = case when d.status = 'pending' and coalesce(d.retry_in, 0) > 0 then null
                                  else j.tenant_seq end,
                finished_at = case when d.status in ('completed', 'failed', 'cancelled')
                                     or (d.status = 'pending' and j.cancel_requested) then now() end,
                lease_owner = null,
                lease_expires_at = null,
                cancel_requested = false,
                updated_at = now()
            from done d
            -- `status::text`: compared as the enum, it matches the predicates of the partial
            -- indexes on processing jobs, and the plan made once for every later call (when few
            -- jobs ran) read all the running jobs instead of these by their key.
            where j.id = any(array(select id from done))
              and j.id = d.id and j.lease_token = d.lease_token and j.status::text = 'processing'
            returning j.id, j.lease_token, j.status,
                      j.attempts + (case when coalesce(d.give_back, false) then 1 else 0 end) as attempt,
                      j.attempt_started_at, d.outcome, d.error, d.provider, d.model, d.request_id,
                      d.latency_ms, d.input_tokens, d.output_tokens, d.reasoning_tokens, d.cost_usd, j.type,
                      j.tenant
        ), closed as (
            insert into aijobs.job_attempts as a (
                lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome, error,
                provider, model, request_id, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd
            )
            select f.lease_token, f.id, f.attempt, p_worker_id, coalesce(f.attempt_started_at, now()), now(),
                   f.outcome, f.error, f.provider, f.model, f.request_id, f.latency_ms, f.input_tokens,
                   f.output_tokens, f.reasoning_tokens, f.cost_usd
            from finished f
        ), superseded as (
            -- A write that lost the race still records what its call cost, on the attempt the
            -- rescuer closed as lost; it never rewrites an attempt that ended otherwise. A hand-back
            -- (shutdown, or a lease it could not renew) carries no call to record: the attempt
            -- stays lost.
            update aijobs.job_attempts a
            set outcome = 'superseded',
                error = coalesce(d.error, a.error),
                provider = d.provider, model = d.model, request_id = d.request_id,
                latency_ms = d.latency_ms, input_tokens = d.input_tokens, output_tokens = d.output_tokens,
                reasoning_tokens = d.reasoning_tokens, cost_usd = d.cost_usd
            from done d
            where a.lease_token = any(array(
                      select lease_token from done where lease_token not in (select lease_token from finished)))
              and a.lease_token = d.lease_token
              and a.outcome = 'lost'
              and d.outcome <> 'handed_back'
        ), wake as (
            -- A job of a tenant with a limit on running jobs that ends makes room for the tenant's
            -- jobs the claims passed over: if some are due, wake the workers (created jobs wake them
            -- the same way). Never without a limit: the drain of an unlimited queue sends nothing more.
            select pg_notify('aijobs_jobs', t.type)
            from (select distinct g.type
                  from (select f.tenant, min(f.type) as type,
                               bool_or(exists (select from aijobs.job_types k
                                               where k.name = f.type and k.max_running_per_tenant is not null))
                                   as type_limited
                        from finished f group by f.tenant) g
                  where (g.type_limited
                         or coalesce((select x.max_running from aijobs.tenants x where x.tenant = g.tenant),
                                     (select s.max_running_per_tenant from aijobs.settings s)) is not null)
                    and exists (select from aijobs.jobs p
                                where p.tenant = g.tenant and p.status = 'pending' and p.run_at <= now())) t
            where exists (select from aijobs.settings s where s.max_running_per_tenant is not null)
               or exists (select from aijobs.tenants x where x.max_running is not null)
               or exists (select from aijobs.job_types k where k.max_running_per_tenant is not null)
        )
        -- `wake` is a plain query, run only if read: the count reads it.
        select id, lease_token, status::text from finished
        where (select count(*) from wake) >= 0;
end
$$;

revoke all on function aijobs.take_turns(uuid, integer), aijobs.turn_due_jobs(integer)
    from public, anon, authenticated, service_role;
-- The claim calls them as the caller (service_role's worker too).
grant execute on function aijobs.take_turns(uuid, integer), aijobs.turn_due_jobs(integer) to service_role;
