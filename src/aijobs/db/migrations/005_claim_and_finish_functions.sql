-- Migration 005: the claim and the finish of attempts become functions (they were named
-- queries in ../queries/jobs.sql), unchanged as statements. PostgreSQL planned each claim and
-- each finish again at every execution (a custom plan always looked cheaper than a generic one
-- with an unknown limit), and the planning of the claim took longer than its execution.
-- In a function the plan is made once per connection. ../schema.sql shows the result.

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
                   or exists (select from aijobs.tenants t where t.max_running is not null) as any_limit
            from aijobs.settings s
        ), full_tenants as (
            -- At their limit by this statement's snapshot: enough to pass their jobs over; claim_room
            -- decides exactly.
            select r.user_id
            from (select j.user_id, count(*) as running from aijobs.jobs j
                  where j.status = 'processing' and (select l.any_limit from limits l)
                  group by j.user_id) r
            where r.running >= coalesce((select t.max_running from aijobs.tenants t where t.tenant = r.user_id),
                                        (select l.per_tenant from limits l))
        ), turns as (
            -- Two arms, of which only one runs (each opens with a test of the statement's own, done
            -- once): with nothing paused and no tenant at its limit, the usual case, the fair-share
            -- index alone, without a filter whose selectivity the planner cannot know (with one
            -- tenant or one type in the statistics it took `<> all(...)` to pass nothing and sorted
            -- every pending job); otherwise the same walk, passing those jobs over.
            select * from (
                select id, user_id, fair_tag from aijobs.jobs
                where status = 'pending' and run_at <= now()
                  and (select cardinality(p.types) = 0 from paused p)
                  and not exists (select from full_tenants)
                order by fair_tag, run_at, id
                limit p_limit
                for update skip locked
            ) plain
            union all
            select * from (
                select id, user_id, fair_tag from aijobs.jobs
                where status = 'pending' and run_at <= now()
                  and not ((select cardinality(p.types) = 0 from paused p) and not exists (select from full_tenants))
                  and coalesce(type <> all((select types from paused)::text[]), true)
                  and coalesce(user_id <> all(array(select f.user_id from full_tenants f)), true)
                order by fair_tag, run_at, id
                limit p_limit
                for update skip locked
            ) passing_over
        ), turn_counts as (
            -- Through arrays, so the planner counts a few tenants rather than its default of 200
            -- groups: its estimate of the whole claim then stays small, and with it the claim's cost
            -- under the threshold where PostgreSQL would compile it (JIT) at every execution.
            select array_agg(g.user_id) as users, array_agg(g.n)::integer[] as ns
            from (select user_id, count(*) as n from turns group by user_id) g
        ), tenants as (
            select u.user_id, u.n
            from turn_counts a cross join lateral unnest(a.users, a.ns) as u(user_id, n)
            where not coalesce((select l.any_limit from limits l), false)
            union all
            select r.tenant, r.n
            from aijobs.claim_room((select a.users from turn_counts a), (select a.ns from turn_counts a)) r
            where coalesce((select l.any_limit from limits l), false)
        ), picked as (
            select b.id, b.user_id, b.fair_tag from tenants t
            cross join lateral (
                select j.id, j.user_id, j.fair_tag from aijobs.jobs j
                where j.user_id = t.user_id and j.status = 'pending' and j.run_at <= now()
                  and coalesce(j.type <> all((select types from paused)::text[]), true)
                order by j.priority desc, j.tenant_seq, j.run_at
                limit t.n
                for update skip locked
            ) b
        ), displaced as (
            -- A turn whose own job stays (one of higher priority ran in its place) takes over that
            -- job's later tag, so the tenant keeps exactly one turn per pending job; tenant_seq
            -- keeps the job's place in its tenant's own order.
            select x.id, y.fair_tag
            from (select t.id, t.user_id, row_number() over (partition by t.user_id order by t.fair_tag, t.id) as r
                  from turns t where not exists (select from picked p where p.id = t.id)) x
            join (select p.user_id, p.fair_tag, row_number() over (partition by p.user_id order by p.fair_tag, p.id) as r
                  from picked p where not exists (select from turns t where t.id = p.id)) y
              on y.user_id = x.user_id and y.r = x.r
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
            where j.id = any(array(select id from picked))
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
                      j.user_id
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
                  from (select f.user_id, min(f.type) as type from finished f group by f.user_id) g
                  where coalesce((select x.max_running from aijobs.tenants x where x.tenant = g.user_id),
                                 (select s.max_running_per_tenant from aijobs.settings s)) is not null
                    and exists (select from aijobs.jobs p
                                where p.user_id = g.user_id and p.status = 'pending' and p.run_at <= now())) t
            where exists (select from aijobs.settings s where s.max_running_per_tenant is not null)
               or exists (select from aijobs.tenants x where x.max_running is not null)
        )
        -- `wake` is a plain query, run only if read: the count reads it.
        select id, lease_token, status::text from finished
        where (select count(*) from wake) >= 0;
end
$$;

-- The worker's statements: its own role (the owner) and service_role, never a user, whatever
-- default privileges the database adds (Supabase grants new functions to its roles).
revoke all on function aijobs.claim_jobs(text, integer, double precision)
    from public, anon, authenticated, service_role;
revoke all on function aijobs.finish_attempts(text, jsonb) from public, anon, authenticated, service_role;
grant execute on function aijobs.claim_jobs(text, integer, double precision),
    aijobs.finish_attempts(text, jsonb) to service_role;
