-- Named queries for the queue. Each starts with `-- name: <name>`; aijobs.db.queries loads
-- them once. Parameters are psycopg named placeholders; nothing here is built from input.

-- name: job_claim
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
    select r.tenant
    from (select j.tenant, count(*) as running from aijobs.jobs j
          where j.status = 'processing' and (select l.any_limit from limits l)
          group by j.tenant) r
    where r.running >= coalesce((select t.max_running from aijobs.tenants t where t.tenant = r.tenant),
                                (select l.per_tenant from limits l))
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
        order by fair_tag, run_at, id
        limit %(limit)s
        for update skip locked
    ) plain
    union all
    select * from (
        select id, tenant, fair_tag from aijobs.jobs
        where status = 'pending' and run_at <= now()
          and not ((select cardinality(p.types) = 0 from paused p) and not exists (select from full_tenants))
          and coalesce(type <> all((select types from paused)::text[]), true)
          and coalesce(tenant <> all(array(select f.tenant from full_tenants f)), true)
        order by fair_tag, run_at, id
        limit %(limit)s
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
    select b.id, b.tenant, b.fair_tag from tenants t
    cross join lateral (
        select j.id, j.tenant, j.fair_tag from aijobs.jobs j
        where j.tenant = t.tenant and j.status = 'pending' and j.run_at <= now()
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
    from (select t.id, t.tenant, row_number() over (partition by t.tenant order by t.fair_tag, t.id) as r
          from turns t where not exists (select from picked p where p.id = t.id)) x
    join (select p.tenant, p.fair_tag, row_number() over (partition by p.tenant order by p.fair_tag, p.id) as r
          from picked p where not exists (select from turns t where t.id = p.id)) y
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
        lease_owner = %(worker_id)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
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

-- name: job_finish_many
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
with done as (
    select * from jsonb_to_recordset(%(rows)s::jsonb) as d(
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
    where j.id = any(array(select id from done))
      and j.id = d.id and j.lease_token = d.lease_token and j.status = 'processing'
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
    select f.lease_token, f.id, f.attempt, %(worker_id)s, coalesce(f.attempt_started_at, now()), now(),
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
          from (select f.tenant, min(f.type) as type from finished f group by f.tenant) g
          where coalesce((select x.max_running from aijobs.tenants x where x.tenant = g.tenant),
                         (select s.max_running_per_tenant from aijobs.settings s)) is not null
            and exists (select from aijobs.jobs p
                        where p.tenant = g.tenant and p.status = 'pending' and p.run_at <= now())) t
    where exists (select from aijobs.settings s where s.max_running_per_tenant is not null)
       or exists (select from aijobs.tenants x where x.max_running is not null)
)
-- `wake` is a plain query, run only if read: the count reads it.
select id, lease_token, status::text from finished
where (select count(*) from wake) >= 0;

-- name: job_heartbeat
-- Extend the leases this worker still holds and report which of them were asked to cancel.
-- A (job, token) pair missing from the answer is a lease this worker has lost.
update aijobs.jobs j
set lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
from unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) as t(id, token)
where j.id = t.id and j.lease_token = t.token and j.status = 'processing'
returning j.id, j.cancel_requested;

-- name: job_rescue_expired
-- Take back jobs whose lease expired by the database clock (worker killed, machine gone):
-- back to pending, or failed when the attempt budget is spent (a poison job), or cancelled
-- when a cancel was asked. The dead attempt is closed as `lost`.
with expired as (
    -- Locked, so what is read here is what the update below replaces: the dead attempt.
    select id, lease_token, lease_owner, attempts, attempt_started_at from aijobs.jobs
    where status = 'processing' and lease_expires_at < now()
    order by lease_expires_at
    limit %(limit)s
    for update skip locked
), rescued as (
    update aijobs.jobs j
    set status = case when j.cancel_requested then 'cancelled'::aijobs.job_status
                      when j.attempts >= j.max_attempts then 'failed'::aijobs.job_status
                      else 'pending'::aijobs.job_status end,
        error = 'lease expired: worker ' || coalesce(j.lease_owner, '?')
                || ' stopped heartbeating during attempt ' || j.attempts,
        -- run_at and fair_tag stay as they were: a job taken back from a dead worker keeps
        -- its early turn, not behind everything queued while it was held.
        finished_at = case when j.cancel_requested or j.attempts >= j.max_attempts then now() end,
        lease_owner = null,
        lease_expires_at = null,
        cancel_requested = false,
        updated_at = now()
    from expired e
    where j.id = e.id
    returning j.id, j.type, j.status, j.error, j.attempts
), closed as (
    insert into aijobs.job_attempts as a (lease_token, job_id, attempt, worker_id, started_at, finished_at,
                                   outcome, error)
    select e.lease_token, e.id, e.attempts, coalesce(e.lease_owner, '?'),
           coalesce(e.attempt_started_at, now()), now(), 'lost', r.error
    from rescued r join expired e on e.id = r.id
)
select id, type, status, attempts, error from rescued;

-- name: job_rate_limited_attempts
-- How many of a job's attempts ended rate limited (they give their attempt back, so the
-- attempt count does not say): the job's own backoff after a 429 grows with it.
select count(*)::int from aijobs.job_attempts where job_id = %(job_id)s and outcome = 'rate_limited';

-- name: job_get
select j.*, (select count(*) from aijobs.job_attempts a where a.job_id = j.id) as attempt_rows
from aijobs.jobs j where j.id = %(id)s;

-- name: job_find_by_id_part
-- The dashboard's search by part of an id: the ids in [low, high] (those with a given start:
-- ids are UUIDv7, so that is a range of the primary key) that end with `suffix` ('' for any).
-- Only the newest `scan` ids of the range are read, which bounds a search by an end alone;
-- the newest `limit` matches are answered.
select j.id, j.type, j.status::text as status, j.created_at
from (
    select r.id from (
        select id from aijobs.jobs
        where id between %(low)s::uuid and %(high)s::uuid
        order by id desc
        limit %(scan)s
    ) r
    where right(replace(r.id::text, '-', ''), length(%(suffix)s::text)) = %(suffix)s::text
    order by r.id desc
    limit %(limit)s
) m
join aijobs.jobs j on j.id = m.id
order by j.id desc;

-- name: job_attempts_for
-- The attempts that ended, and the one running now (its row is written when it ends).
select lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome, error, provider,
       model, request_id, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd
from aijobs.job_attempts where job_id = %(id)s
union all
select j.lease_token, j.id, j.attempts, j.lease_owner, j.attempt_started_at, null, null, null, null,
       null, null, null, null, null, null, null
from aijobs.jobs j
where j.id = %(id)s and j.status = 'processing'
order by lease_token;

-- name: job_list
-- Newest first, keyset-paginated on (created_at, id): a page is an index range scan. Used by
-- the API (as the user, under RLS; or as admin) and the CLI; user_id narrows, RLS enforces.
select id, user_id, tenant, type, payload, status::text as status, priority, run_at, attempts, max_attempts,
       result, error, cost, idempotency_key, retry_of, cancel_requested,
       created_at, started_at, finished_at, updated_at
from aijobs.jobs
where (%(user_id)s::uuid is null or user_id = %(user_id)s::uuid)
  and (%(status)s::aijobs.job_status is null or status = %(status)s::aijobs.job_status)
  and (%(type)s::text is null or type = %(type)s::text)
  and (%(before_created_at)s::timestamptz is null
       or (created_at, id) < (%(before_created_at)s::timestamptz, %(before_id)s::uuid))
order by created_at desc, id desc
limit %(limit)s;

-- name: job_create
-- The one way to create jobs (aijobs.create_jobs): one user's jobs, charged all or nothing,
-- rows in input order, taking the turns of `tenant` (null: the user's own). Element i of every array is job i. The arrays travel in PostgreSQL's
-- binary format (the `b` placeholders): in text format psycopg quotes and escapes every
-- element with a regular expression, about a third of the client's CPU per job of a batch.
select * from aijobs.create_jobs(
    %(user_id)s::uuid, %(types)b::text[], %(payloads)b::jsonb[], %(priorities)b::smallint[],
    %(run_ats)b::timestamptz[], %(max_attempts)b::integer[], %(idempotency_keys)b::text[],
    %(retry_ofs)b::uuid[], %(quota)s::boolean, %(tenant)s::uuid
);

-- name: job_create_one
-- job_create for a batch of one, with scalar parameters: psycopg dumps a scalar for a
-- fraction of what a one-element array costs it, so the arrays are built on the server.
select * from aijobs.create_jobs(
    %(user_id)s::uuid, array[%(type)s::text], array[%(payload)s::jsonb], array[%(priority)s::smallint],
    array[%(run_at)s::timestamptz], array[%(max_attempts)s::integer], array[%(idempotency_key)s::text],
    array[%(retry_of)s::uuid], %(quota)s::boolean, %(tenant)s::uuid
);

-- name: job_create_grouped
-- Several API requests' creations, each for its own user (and tenant) with the quota, in one
-- statement and one commit (aijobs.create_jobs_grouped): each row says what became of request `ord`
-- (1-based), a job or the refusal's SQLSTATE, message and detail. Autocommit only.
select * from aijobs.create_jobs_grouped(
    %(user_ids)b::uuid[], %(types)b::text[], %(payloads)b::jsonb[], %(priorities)b::smallint[],
    %(run_ats)b::timestamptz[], %(max_attempts)b::integer[], %(retry_ofs)b::uuid[], %(tenants)b::uuid[]
);

-- name: job_cancel
select * from aijobs.cancel_job(%(id)s, %(user_id)s);

-- name: job_status_summary
-- The seed's own query: count and average processing time per status.
select status::text as status,
       count(*) as count,
       avg(extract(epoch from (updated_at - created_at))) as avg_processing_time
from aijobs.jobs
group by status
order by status;

-- name: api_job_get
select id, user_id, tenant, type, payload, status::text as status, priority, run_at, attempts, max_attempts,
       result, error, cost, idempotency_key, retry_of, cancel_requested,
       created_at, started_at, finished_at, updated_at
from aijobs.jobs where id = %(id)s;

-- name: api_job_status
select status::text as status from aijobs.jobs where id = %(id)s;

-- name: api_in_flight_count
select count(*) as in_flight from aijobs.jobs
where user_id = %(user_id)s and status in ('pending', 'processing');

-- name: job_expedite
-- Move one pending job ahead of every other tenant's (aijobs.expedite_job: owner and
-- service_role only). No row when the job is not pending.
select id, fair_tag from aijobs.expedite_job(%(id)s);
