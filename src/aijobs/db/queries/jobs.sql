-- Named queries for the queue. Each starts with `-- name: <name>`; aijobs.db.queries loads
-- them once. Parameters are psycopg named placeholders; nothing here is built from input.

-- name: job_claim
-- Claim up to `limit` runnable jobs for one worker, fairly between tenants: aijobs.claim_jobs
-- (../schema.sql), whose plan is made once per connection. Columns in `ClaimedJob`'s order.
select * from aijobs.claim_jobs(%(worker_id)s, %(limit)s, %(lease_seconds)s);

-- name: job_finish_many
-- End many attempts in one statement, fenced by their lease tokens: aijobs.finish_attempts
-- (../schema.sql). Answers each write that won with the status it wrote.
select * from aijobs.finish_attempts(%(worker_id)s, %(rows)s::jsonb);

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
