-- Migration 004: job types a deployment can switch off, and each account's own voice for LLM
-- job types.
--
-- 1. aijobs.create_jobs refuses a disabled type with AJ007 ("job type x is disabled in this
--    deployment", detail {"type", "index"}) where it said "unknown job type" (AJ001); the
--    jobs of that type already pending are kept. `aijobs types-disable NAME` and
--    `PUT /api/admin/job-types/{name}` switch it.
-- 2. aijobs.account_settings: brand voice, business name, signature, default language and
--    tone, bounded as the API's model bounds them; written by the API's own role, read by the
--    worker for the types that use them and by users for their own row.

-- An account's own voice for LLM job types (brand voice, business name, signature, default
-- language and tone), read by the worker for the types that use them and sent to the model
-- as data. Bounded here as the API's model bounds it, so no caller stores more. Written by the
-- API's own role for the user it verified (or an admin); users read their own row.
create table aijobs.account_settings (
    user_id           uuid primary key,
    brand_voice       text check (char_length(brand_voice) between 1 and 2000),
    business_name     text check (char_length(business_name) between 1 and 200),
    signature         text check (char_length(signature) between 1 and 300),
    default_language  text check (default_language ~ '^[a-z]{2}$'),
    default_tone      text check (default_tone in ('friendly', 'professional', 'apologetic', 'enthusiastic', 'neutral')),
    updated_at        aijobs.instant not null default now()
);

alter table aijobs.account_settings enable row level security;
alter table aijobs.account_settings force row level security;
do $$
declare
    r text;
begin
    foreach r in array array['service_role', current_user::text] loop
        execute format(
            'create policy %I on aijobs.account_settings for all to %I using (true) with check (true)',
            'account_settings_all_' || r, r
        );
    end loop;
end
$$;
create policy account_settings_own on aijobs.account_settings for select to authenticated
    using (user_id = auth.uid());
revoke all on aijobs.account_settings from public, anon, authenticated, service_role;
grant select on aijobs.account_settings to authenticated;
grant select, insert, update, delete on aijobs.account_settings to service_role;

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
    v_bad      record;
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
    select e.i, e.field, e.reason into v_bad
    from (
        select t.i,
               case when k.name is null then 'type'
                    when not k.enabled then 'disabled'
                    when p.problem is not null then 'payload'
                    when t.priority not between -100 and 100 then 'priority'
                    when not (t.run_at >= '1970-01-01 00:00:00+00' and t.run_at < '9999-01-01 00:00:00+00')
                        then 'run_at'
                    when t.max_attempts not between 1 and 100 then 'max_attempts'
                    when t.key !~ '^[ -~]{1,255}$' then 'idempotency_key'
               end as field,
               case when k.name is null then 'is not a known job type'
                    when not k.enabled then 'is disabled in this deployment'
                    when p.problem is not null then p.problem
                    when t.priority not between -100 and 100 then 'must be between -100 and 100'
                    when not (t.run_at >= '1970-01-01 00:00:00+00' and t.run_at < '9999-01-01 00:00:00+00')
                        then 'must be a finite time from 1970 to 9998'
                    when t.max_attempts not between 1 and 100 then 'must be between 1 and 100'
                    when t.key !~ '^[ -~]{1,255}$' then 'must be 1-255 printable ASCII characters'
               end as reason
        from unnest(p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts, p_idempotency_keys)
             with ordinality as t(type, payload, priority, run_at, max_attempts, key, i)
        cross join lateral (select aijobs.json_problem(t.payload) as problem) p
        left join aijobs.job_types k on k.name = t.type
    ) e
    where e.field is not null
    order by e.i
    limit 1;
    if found then
        if v_bad.field = 'type' then
            raise exception 'unknown job type: %', p_types[v_bad.i] using errcode = 'AJ001',
                detail = json_build_object('type', p_types[v_bad.i], 'index', v_bad.i - 1)::text;
        end if;
        if v_bad.field = 'disabled' then
            raise exception 'job type % is disabled in this deployment', p_types[v_bad.i] using errcode = 'AJ007',
                detail = json_build_object('type', p_types[v_bad.i], 'index', v_bad.i - 1)::text;
        end if;
        raise exception 'jobs[%].%: %', v_bad.i - 1, v_bad.field, v_bad.reason using errcode = 'AJ005',
            detail = json_build_object(
                'field', 'jobs[' || (v_bad.i - 1) || '].' || v_bad.field, 'reason', v_bad.reason,
                'index', v_bad.i - 1)::text;
    end if;
    if p_idempotency_keys is not null
       and (select count(k) <> count(distinct k) from unnest(p_idempotency_keys) k) then
        raise exception 'an idempotency key is repeated within one creation' using errcode = 'AJ005',
            detail = json_build_object('field', 'idempotency_key', 'reason', 'is repeated')::text;
    end if;

    select a.balance into v_balance from aijobs.accounts a where a.user_id = v_user for update;
    if not found then
        raise exception 'unknown user: %', v_user using errcode = 'AJ002',
            detail = json_build_object('user_id', v_user)::text;
    end if;

    -- What the new jobs cost together; an element whose key already names a job of this
    -- user is answered with that job and costs nothing.
    select count(*), coalesce(sum(k.cost), 0) into v_new, v_total
    from unnest(p_types, p_idempotency_keys) as t(type, key)
    join aijobs.job_types k on k.name = t.type
    where t.key is null
       or not exists (select from aijobs.jobs e where e.user_id = v_user and e.idempotency_key = t.key);

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
        select t.i into v_bad
        from unnest(p_retry_ofs, p_idempotency_keys) with ordinality as t(retry_of, key, i)
        where t.retry_of is not null
          and not exists (select from aijobs.jobs r where r.id = t.retry_of and r.user_id = v_user)
          and (t.key is null
               or not exists (select from aijobs.jobs e where e.user_id = v_user and e.idempotency_key = t.key))
        order by t.i limit 1;
        if found then
            raise exception 'jobs[%].retry_of must name one of your jobs', v_bad.i - 1 using errcode = 'AJ005',
                detail = json_build_object(
                    'field', 'jobs[' || (v_bad.i - 1) || '].retry_of', 'reason', 'must name one of your jobs',
                    'index', v_bad.i - 1)::text;
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
        insert into aijobs.tenants as t (tenant, last_tag)
        values (v_user, coalesce(v_clock, 0) + v_new::bigint * 1000000)
        on conflict (tenant) do update
            set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + v_new::bigint * (1000000 / t.weight),
                updated_at = now()
        returning t.last_tag, 1000000 / t.weight into v_tag, v_step;
        v_tag := v_tag - v_new * v_step;
    end if;

    -- Ids are made first, so each inserted row is matched back to its input position.
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
        returning aijobs.jobs.id, aijobs.jobs.status, aijobs.jobs.cost, aijobs.jobs.created_at::timestamptz as created_at,
                  aijobs.jobs.run_at::timestamptz as run_at
    ), debited as (
        insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)
        select v_user, f.id, 'debit', -f.cost, f.type from fresh f order by f.i
    )
    select r.id, r.status, r.cost, v_balance, r.created, r.created_at, r.run_at
    from (
        select n.id, n.status, n.cost, true as created, n.created_at, n.run_at, f.i
        from fresh f join inserted n on n.id = f.id
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
