-- Named queries for the queue. Each starts with `-- name: <name>`; aijobs.db.queries loads
-- them once. Parameters are psycopg named placeholders; nothing here is built from input.

-- name: job_claim
-- Claim up to `limit` runnable jobs for one worker in one statement: highest priority
-- first, then FIFO. SKIP LOCKED lets many workers claim at once without waiting on each
-- other. The attempt's row is written when it ends (012); until then the job row names it:
-- lease_token, lease_owner, attempts and attempt_started_at.
with picked as (
    select id from jobs
    where status = 'pending' and run_at <= now()
    order by priority desc, run_at, created_at
    limit %(limit)s
    for update skip locked
), claimed as (
    update jobs j
    set status = 'processing',
        attempts = j.attempts + 1,
        lease_token = nextval('job_lease_seq'),
        lease_owner = %(worker_id)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        attempt_started_at = now(),
        started_at = coalesce(j.started_at, now()),
        updated_at = now()
    -- `= any(array(...))` keeps this a primary-key lookup per claimed row; a join here
    -- lets the planner hash the whole table once history grows.
    where j.id = any(array(select id from picked))
    returning j.id, j.type, j.payload, j.attempts, j.max_attempts, j.lease_token, j.run_at, j.cost,
              j.priority, j.created_at
)
-- The columns of `ClaimedJob`, in its order (rows are built positionally). The time the
-- job waited is measured here, by the database clock (`now()` is the claim's start).
select id, type, payload, attempts, max_attempts, lease_token,
       extract(epoch from now() - run_at)::float8 as waited_seconds, cost
from claimed
order by priority desc, run_at, created_at;

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
        id uuid, lease_token bigint, status job_status, outcome text, result jsonb, error text,
        retry_in real, give_back boolean, provider text, model text, request_id text,
        latency_ms real, input_tokens integer, output_tokens integer, reasoning_tokens integer,
        cost_usd numeric
    )
), finished as (
    update jobs j
    -- Every expression here reads the row as it was: j.cancel_requested is the request
    -- this write clears.
    set status = case when d.status = 'pending' and j.cancel_requested then 'cancelled'::job_status
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
              d.latency_ms, d.input_tokens, d.output_tokens, d.reasoning_tokens, d.cost_usd
), closed as (
    insert into job_attempts as a (
        lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome, error,
        provider, model, request_id, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd
    )
    select f.lease_token, f.id, f.attempt, %(worker_id)s, coalesce(f.attempt_started_at, now()), now(),
           f.outcome, f.error, f.provider, f.model, f.request_id, f.latency_ms, f.input_tokens,
           f.output_tokens, f.reasoning_tokens, f.cost_usd
    from finished f
    -- Only a row opened at claim by a version before 012 can exist already: close it.
    on conflict (lease_token) do update
    set finished_at = excluded.finished_at, outcome = excluded.outcome, error = excluded.error,
        provider = excluded.provider, model = excluded.model, request_id = excluded.request_id,
        latency_ms = excluded.latency_ms, input_tokens = excluded.input_tokens,
        output_tokens = excluded.output_tokens, reasoning_tokens = excluded.reasoning_tokens,
        cost_usd = excluded.cost_usd
    where a.finished_at is null
), superseded as (
    -- A write that lost the race still records what its call cost, on the attempt the
    -- rescuer closed as lost; it never rewrites an attempt that ended otherwise. A hand-back
    -- (shutdown, or a lease it could not renew) carries no call to record: the attempt
    -- stays lost.
    update job_attempts a
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
)
select id, lease_token, status::text from finished;

-- name: job_heartbeat
-- Extend the leases this worker still holds and report which of them were asked to cancel.
-- A (job, token) pair missing from the answer is a lease this worker has lost.
update jobs j
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
    select id, lease_token, lease_owner, attempts, attempt_started_at from jobs
    where status = 'processing' and lease_expires_at < now()
    order by lease_expires_at
    limit %(limit)s
    for update skip locked
), rescued as (
    update jobs j
    set status = case when j.cancel_requested then 'cancelled'::job_status
                      when j.attempts >= j.max_attempts then 'failed'::job_status
                      else 'pending'::job_status end,
        error = 'lease expired: worker ' || coalesce(j.lease_owner, '?')
                || ' stopped heartbeating during attempt ' || j.attempts,
        -- run_at stays as it was (in the past): a job taken back from a dead worker goes to
        -- the front of its priority, not behind everything queued while it was held.
        finished_at = case when j.cancel_requested or j.attempts >= j.max_attempts then now() end,
        lease_owner = null,
        lease_expires_at = null,
        cancel_requested = false,
        updated_at = now()
    from expired e
    where j.id = e.id
    returning j.id, j.type, j.status, j.error, j.attempts
), closed as (
    insert into job_attempts as a (lease_token, job_id, attempt, worker_id, started_at, finished_at,
                                   outcome, error)
    select e.lease_token, e.id, e.attempts, coalesce(e.lease_owner, '?'),
           coalesce(e.attempt_started_at, now()), now(), 'lost', r.error
    from rescued r join expired e on e.id = r.id
    -- A row opened at claim by a version before 012: close it.
    on conflict (lease_token) do update
    set finished_at = excluded.finished_at, outcome = 'lost', error = excluded.error
    where a.finished_at is null
)
select id, type, status, attempts, error from rescued;

-- name: job_rate_limited_attempts
-- How many of a job's attempts ended rate limited (they give their attempt back, so the
-- attempt count does not say): the job's own backoff after a 429 grows with it.
select count(*)::int from job_attempts where job_id = %(job_id)s and outcome = 'rate_limited';

-- name: job_get
select j.*, (select count(*) from job_attempts a where a.job_id = j.id) as attempt_rows
from jobs j where j.id = %(id)s;

-- name: job_attempts_for
-- The attempts that ended, and the one running now (its row is written when it ends).
select lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome, error, provider,
       model, request_id, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd
from job_attempts where job_id = %(id)s
union all
select j.lease_token, j.id, j.attempts, j.lease_owner, j.attempt_started_at, null, null, null, null,
       null, null, null, null, null, null, null
from jobs j
where j.id = %(id)s and j.status = 'processing'
  and not exists (select 1 from job_attempts a where a.lease_token = j.lease_token)
order by lease_token;

-- name: job_list
-- Newest first, keyset-paginated on (created_at, id): a page is an index range scan. Used by
-- the API (as the user, under RLS; or as admin) and the CLI; user_id narrows, RLS enforces.
select id, user_id, type, payload, status::text as status, priority, run_at, attempts, max_attempts,
       result, error, cost, idempotency_key, retry_of, cancel_requested,
       created_at, started_at, finished_at, updated_at
from jobs
where (%(user_id)s::uuid is null or user_id = %(user_id)s::uuid)
  and (%(status)s::job_status is null or status = %(status)s::job_status)
  and (%(type)s::text is null or type = %(type)s::text)
  and (%(before_created_at)s::timestamptz is null
       or (created_at, id) < (%(before_created_at)s::timestamptz, %(before_id)s::uuid))
order by created_at desc, id desc
limit %(limit)s;

-- name: job_create
select * from create_credit_consuming_job(
    %(user_id)s, %(type)s, %(payload)s, %(priority)s::smallint, %(run_at)s,
    %(max_attempts)s, %(idempotency_key)s, %(retry_of)s
);

-- name: job_create_many
-- One user's batch, all or nothing, rows in input order (015_create_jobs_in_batches.sql).
-- The arrays travel in PostgreSQL's binary format (the `b` placeholders). In text format
-- psycopg has to quote and escape every element of an array literal with a regular
-- expression: that was about a third of the client's CPU per job of a batch (30-34 -> 19-22
-- µs per job, `enqueue_many` of 100 in a loop).
select * from create_credit_consuming_jobs(
    %(user_id)s, %(types)b, %(payloads)b, %(priorities)b::smallint[], %(run_ats)b::timestamptz[],
    %(max_attempts)b::integer[]
);

-- name: job_create_many_within_cap
-- The API's batch: the signed-in user's in-flight cap, then job_create_many (016); the
-- arrays in binary format, as there.
select * from create_jobs_within_cap(
    %(max_in_flight)s, %(types)b, %(payloads)b, %(priorities)b::smallint[], %(run_ats)b::timestamptz[],
    %(max_attempts)b::integer[]
);

-- name: job_create_within_cap
select * from create_job_within_cap(
    %(max_in_flight)s, %(type)s, %(payload)s, %(priority)s::smallint, %(run_at)s,
    %(max_attempts)s, %(idempotency_key)s, %(retry_of)s
);

-- name: job_create_grouped_for_claims
-- Several API requests' creations without an Idempotency-Key, one statement and one commit
-- (019_api_create_jobs_grouped.sql): element i of each array is request i; each row says
-- what became of its request (`ord`, 1-based), a job or the refusal's SQLSTATE, message and
-- detail. Run it in autocommit only. The arrays travel in binary format, as for
-- job_create_many.
select * from api_create_jobs_grouped(
    %(claims)b::text[], %(max_in_flight)s, %(types)b::text[], %(payloads)b::jsonb[],
    %(priorities)b::smallint[], %(run_ats)b::timestamptz[], %(max_attempts)b::integer[],
    %(retry_ofs)b::uuid[]
);

-- name: job_cancel
select * from job_cancel(%(id)s, %(user_id)s);

-- name: job_status_summary
-- The seed's own query: count and average processing time per status.
select status::text as status,
       count(*) as count,
       avg(extract(epoch from (updated_at - created_at))) as avg_processing_time
from jobs
group by status
order by status;

-- name: job_queue_depth
select type, status::text as status, count(*) as count
from jobs where status in ('pending', 'processing')
group by type, status order by type, status;
