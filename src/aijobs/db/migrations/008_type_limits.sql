-- Migration 008: a job type may have its own limit on running jobs per tenant
-- (`job_types.max_running_per_tenant`; null: none), beside the tenant's own limit: at most that
-- many of one tenant's jobs of the type run at once, across all workers; the tenant's other
-- jobs run meanwhile. The claim passes over (tenant, type) pairs at their limit, and
-- `claim_type_room` (new) counts each pair's running jobs under the tenant's lock that
-- `claim_room` now takes for every tenant of the claim while any type has a limit, so
-- concurrent claims never pass it; an ending job of a limited type wakes the workers. Without
-- any type limit the claim does what it did. ../schema.sql shows the result.

alter table aijobs.job_types
    add column max_running_per_tenant integer check (max_running_per_tenant > 0);

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
                   or exists (select from aijobs.job_types k where k.max_running_per_tenant is not null) as any_limit,
                   exists (select from aijobs.job_types k where k.max_running_per_tenant is not null)
                       as any_type_limit
            from aijobs.settings s
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

revoke all on function aijobs.claim_type_room(uuid[], text[], integer[])
    from public, anon, authenticated, service_role;
-- The worker's statements call these; service_role may run a worker.
grant execute on function aijobs.claim_room(uuid[], integer[]),
    aijobs.claim_type_room(uuid[], text[], integer[]) to service_role;
