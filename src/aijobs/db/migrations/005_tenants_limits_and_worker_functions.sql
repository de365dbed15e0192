-- Migration 005: organisation tenants, limits per job type, and the worker's claim and finish
-- as functions. ../schema.sql shows the result.
--
-- The tenant may be an organisation, not only the user. Fair share, the limits on running
-- jobs, expediting and the top-tenants figures grouped jobs by their user; they now group by
-- `jobs.tenant`: the user's id by default (existing rows are backfilled with it), or what the
-- creation named (an organisation id from the caller's JWT), so the users of one organisation
-- share one tenant's turns and limit. The user stays the owner: credits, the in-flight quota,
-- row-level security and listing.
-- - `settings.tenant_claim`: where a user's own call (a Supabase RPC) finds its tenant in its
--   JWT's claims (a dot-separated path; null: the user), written by `aijobs migrate`;
--   `aijobs.acting_tenant` applies that rule, beside `acting_user`.
-- - `aijobs.create_jobs` takes `p_tenant` last (a new signature: the old one is dropped and its
--   grants given again): a trusted caller's tenant, else the user; a user's own call may not
--   choose one (AJ004) and its claim must be a uuid (AJ005, field `tenant`). A batch's answer
--   is made from what it inserted: joining the new rows back, the planner (which cannot know a
--   batch's size inside the function) compared each with every other, and a batch of 5,000
--   took 1.4 s.
-- - `aijobs.create_jobs_grouped` takes `p_tenants`, locks every account of the group first and
--   creates in tenant order (no deadlock where users share a tenant).
-- - `jobs_tenant_claim_idx` and `jobs_tenant_running_idx` key on the tenant; `claim_room`
--   counts and `expedite_job` orders by it.
--
-- A job type may have its own limit on running jobs per tenant
-- (`job_types.max_running_per_tenant`): the claim passes over (tenant, type) pairs at their
-- limit, and `claim_type_room` counts each pair's running jobs under the tenant's lock, which
-- `claim_room` takes for every tenant of the claim while any type has a limit.
--
-- The claim and the finish of attempts become functions (`claim_jobs`, `finish_attempts`; they
-- were named queries in ../queries/jobs.sql). PostgreSQL planned each again at every execution
-- (a custom plan always looked cheaper than a generic one with an unknown limit), and planning
-- the claim took longer than running it; in a function the plan is made once per connection.

alter table aijobs.settings
    add column tenant_claim text check (
        tenant_claim ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$');

alter table aijobs.jobs add column tenant uuid;
update aijobs.jobs set tenant = user_id;
alter table aijobs.jobs alter column tenant set not null;

drop index aijobs.jobs_tenant_claim_idx;
create index jobs_tenant_claim_idx on aijobs.jobs (tenant, priority desc, tenant_seq, run_at)
    where status = 'pending';
drop index aijobs.jobs_tenant_running_idx;
-- A limited tenant's running jobs are counted from these entries alone (never its backlog).
create index jobs_tenant_running_idx on aijobs.jobs (tenant) where status = 'processing';

alter table aijobs.job_types
    add column max_running_per_tenant integer check (max_running_per_tenant > 0);

create function aijobs.acting_tenant(p_tenant uuid, p_user uuid) returns uuid
language plpgsql stable
set search_path = aijobs, pg_temp
as $$
declare
    v_path    text;
    v_claims  jsonb;
    v_value   text;
    v_tenant  uuid := p_user;
begin
    select s.tenant_claim into v_path from settings s;
    if v_path is not null then
        begin
            v_claims := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
        exception when invalid_text_representation then
            raise exception 'the JWT claims are not JSON, so the tenant (claim %) cannot be read', v_path
                using errcode = 'AJ005',
                      detail = json_build_object(
                          'field', 'tenant', 'reason', 'the JWT claims are not JSON (claim ' || v_path || ')')::text;
        end;
        v_value := v_claims #>> string_to_array(v_path, '.');
        if v_value is not null then
            -- Only the canonical spelling, as the API accepts it: PostgreSQL reads more forms.
            if v_value !~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' then
                raise exception 'the JWT claim % (the tenant) must be a uuid', v_path using errcode = 'AJ005',
                    detail = json_build_object(
                        'field', 'tenant', 'reason', 'the JWT claim ' || v_path || ' must be a uuid')::text;
            end if;
            v_tenant := v_value::uuid;
        end if;
    end if;
    if p_tenant is not null and p_tenant <> v_tenant then
        raise exception 'cannot choose a tenant' using errcode = 'AJ004';
    end if;
    return v_tenant;
end
$$;
revoke all on function aijobs.acting_tenant(uuid, uuid) from public, anon, authenticated, service_role;

drop function aijobs.create_jobs_grouped(uuid[], text[], jsonb[], smallint[], timestamptz[], integer[], uuid[]);
drop function aijobs.create_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[], text[], uuid[], boolean);

create function aijobs.create_jobs(
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
    v_user     uuid := aijobs.acting_user(p_user_id, v_trusted);
    -- The trusted case inline: the API's creations pay for no call and no settings read.
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
        where t.tenant = v_tenant
        returning t.last_tag, 1000000 / t.weight into v_tag, v_step;
        if not found then
            insert into aijobs.tenants as t (tenant, last_tag)
            values (v_tenant, coalesce(v_clock, 0) + v_new::bigint * 1000000)
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
        select aijobs.uuid_v7() as id, row_number() over (order by input.i) - 1 as turn, input.*
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

revoke all on function aijobs.create_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[], text[], uuid[], boolean, uuid) from public, anon, authenticated, service_role;
grant execute on function aijobs.create_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[], text[], uuid[], boolean, uuid) to authenticated;
grant execute on function aijobs.create_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[], text[], uuid[], boolean, uuid) to service_role;

create function aijobs.create_jobs_grouped(
    p_user_ids      uuid[],
    p_types         text[],
    p_payloads      jsonb[],
    p_priorities    smallint[],
    p_run_ats       timestamptz[],
    p_max_attempts  integer[],
    p_retry_ofs     uuid[],
    p_tenants       uuid[] default null
)
returns table (
    ord integer, id uuid, status aijobs.job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz, err_state text, err_message text, err_detail text
)
language plpgsql
set search_path = aijobs, pg_temp
as $$
declare
    v_i   integer;
    v_job record;
begin
    if coalesce(cardinality(p_user_ids), 0) > 32 then
        raise exception 'at most 32 creations in one group, not %', cardinality(p_user_ids)
            using errcode = 'AJ005';
    end if;
    perform from aijobs.accounts a where a.user_id = any(p_user_ids) order by a.user_id for update;
    for v_i in
        select u.ord from unnest(p_user_ids) with ordinality as u(user_id, ord)
        order by coalesce(p_tenants[u.ord], u.user_id), u.user_id, u.ord
    loop
        ord := v_i;
        err_state := null;
        err_message := null;
        err_detail := null;
        begin
            select * into v_job from aijobs.create_jobs(
                p_user_ids[v_i], array[p_types[v_i]], array[p_payloads[v_i]], array[p_priorities[v_i]],
                array[p_run_ats[v_i]], array[p_max_attempts[v_i]], null, array[p_retry_ofs[v_i]], true,
                p_tenants[v_i]
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

revoke all on function aijobs.create_jobs_grouped(uuid[], text[], jsonb[], smallint[], timestamptz[], integer[], uuid[], uuid[])
    from public, anon, authenticated, service_role;

create or replace function aijobs.claim_room(p_tenants uuid[], p_wanted integer[])
returns table (tenant uuid, n integer)
language plpgsql
rows 10
set search_path = aijobs, pg_temp
as $$
declare
    v_default  integer;
    v_limited  uuid[];
    v_types    boolean;
begin
    select s.max_running_per_tenant into v_default from settings s;
    -- With a type's own limit per tenant, every tenant of the claim is locked: claim_type_room
    -- counts its running jobs of that type under the same lock, later in the claim.
    v_types := exists (select from job_types k where k.max_running_per_tenant is not null);
    select coalesce(array_agg(w.tenant order by w.tenant), '{}') into v_limited
    from unnest(p_tenants) as w(tenant)
    where v_types
       or coalesce((select t.max_running from tenants t where t.tenant = w.tenant), v_default) is not null;
    if cardinality(v_limited) > 0 then
        insert into tenant_claims (tenant) select u from unnest(v_limited) as u order by u
        on conflict on constraint tenant_claims_pkey do nothing;
        perform from tenant_claims c where c.tenant = any(v_limited) order by c.tenant for update;
    end if;
    return query
    select w.tenant,
           case when l.lim is null then w.n
                else greatest(0, least(w.n, l.lim - coalesce(r.running, 0)))::integer end
    from unnest(p_tenants, p_wanted) as w(tenant, n)
    cross join lateral (
        select coalesce((select t.max_running from tenants t where t.tenant = w.tenant), v_default) as lim
    ) l
    left join (
        select j.tenant, count(*) as running from jobs j
        where j.status = 'processing' and j.tenant = any(v_limited)
        group by j.tenant
    ) r on r.tenant = w.tenant;
end
$$;

create function aijobs.claim_type_room(p_tenants uuid[], p_types text[], p_wanted integer[])
returns table (tenant uuid, type text, n integer)
language plpgsql
rows 10
set search_path = aijobs, pg_temp
as $$
begin
    return query
    select w.tenant, w.type,
           case when k.max_running_per_tenant is null then w.n
                else greatest(0, least(w.n, k.max_running_per_tenant - coalesce(r.running, 0)))::integer end
    from unnest(p_tenants, p_types, p_wanted) as w(tenant, type, n)
    left join job_types k on k.name = w.type
    left join lateral (
        select count(*) as running from jobs j
        where j.status = 'processing' and j.tenant = w.tenant and j.type = w.type
    ) r on k.max_running_per_tenant is not null;
end
$$;

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
    where j.status = 'pending' and j.run_at <= now()
    order by j.fair_tag, j.run_at, j.id limit 1;
    select min(j.tenant_seq) into v_seq from jobs j where j.tenant = v_tenant and j.status = 'pending';
    return query
    update jobs j
    set fair_tag = least(j.fair_tag, coalesce(v_head - 1, j.fair_tag)),
        tenant_seq = least(j.tenant_seq, coalesce(v_seq - 1, j.tenant_seq)),
        priority = 100,
        run_at = least(j.run_at, now()),
        updated_at = now()
    where j.id = p_job_id and j.status = 'pending'
    returning j.id, j.fair_tag;
end
$$;

create function aijobs.claim_jobs(p_worker_id text, p_limit integer, p_lease_seconds double precision)
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
                where status = 'pending' and run_at <= now()
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
                where status = 'pending' and run_at <= now()
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
                where j.tenant = t.tenant and j.status = 'pending' and j.run_at <= now()
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

create function aijobs.finish_attempts(p_worker_id text, p_rows jsonb)
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

-- The worker's statements: its own role (the owner) and service_role, never a user, whatever
-- default privileges the database adds (Supabase grants new functions to its roles).
revoke all on function aijobs.claim_type_room(uuid[], text[], integer[])
    from public, anon, authenticated, service_role;
revoke all on function aijobs.claim_jobs(text, integer, double precision)
    from public, anon, authenticated, service_role;
revoke all on function aijobs.finish_attempts(text, jsonb) from public, anon, authenticated, service_role;
grant execute on function aijobs.claim_jobs(text, integer, double precision),
    aijobs.finish_attempts(text, jsonb),
    aijobs.claim_room(uuid[], integer[]),
    aijobs.claim_type_room(uuid[], text[], integer[])
    to service_role;
