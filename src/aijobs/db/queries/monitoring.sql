-- Monitoring: stats, dashboard, queue samples, maintenance leader and retention.
-- Every read here is bounded by a time window or by the live part of the queue, and walks
-- an index from 008_monitoring.sql, so it costs the same with 1M finished jobs as with 1k.

-- name: mon_queue_depth
-- Pending and processing jobs per type (jobs_active_idx: only the live queue is read).
select type, status::text as status, count(*) as count
from jobs
where status in ('pending', 'processing')
group by type, status
order by type, status;

-- name: mon_oldest_pending
-- Seconds since the oldest pending job was created (null when nothing is pending).
select extract(epoch from now() - min(created_at))::float8 as seconds
from jobs
where status = 'pending';

-- name: mon_job_windows
-- Finished jobs per window (minutes): counts, processing time (first start to finish) and
-- queue wait (creation to first start) of completed jobs.
with w as (
    select unnest(%(windows)s::integer[]) as minutes
), recent as (
    select status, attempts, finished_at,
           extract(epoch from finished_at - started_at)::float8 as processing,
           extract(epoch from started_at - created_at)::float8 as wait
    from jobs
    where finished_at >= now() - make_interval(mins => %(max_minutes)s)
)
select w.minutes,
       count(r.status) filter (where r.status = 'completed') as completed,
       count(r.status) filter (where r.status = 'failed') as failed,
       count(r.status) filter (where r.status = 'cancelled') as cancelled,
       count(r.status) filter (where r.status = 'completed' and r.attempts > 1) as completed_after_retry,
       percentile_cont(0.5) within group (order by r.processing) filter (where r.status = 'completed') as p50,
       percentile_cont(0.95) within group (order by r.processing) filter (where r.status = 'completed') as p95,
       avg(r.processing) filter (where r.status = 'completed') as avg,
       avg(r.wait) filter (where r.status = 'completed') as avg_wait
from w
left join recent r on r.finished_at >= now() - make_interval(mins => w.minutes)
group by w.minutes
order by w.minutes;

-- name: mon_attempt_windows
-- Attempts that ended per window, by outcome: retries, rescues (lost), rate limits.
with w as (
    select unnest(%(windows)s::integer[]) as minutes
), recent as (
    select outcome, finished_at
    from job_attempts
    where finished_at >= now() - make_interval(mins => %(max_minutes)s)
)
select w.minutes,
       count(r.outcome) as attempts,
       count(r.outcome) filter (where r.outcome = 'retry') as retries,
       count(r.outcome) filter (where r.outcome = 'lost') as lost,
       count(r.outcome) filter (where r.outcome = 'rate_limited') as rate_limited
from w
left join recent r on r.finished_at >= now() - make_interval(mins => w.minutes)
group by w.minutes
order by w.minutes;

-- name: mon_provider_windows
-- Provider calls per window, provider and model: latency percentiles, tokens, cost.
with w as (
    select unnest(%(windows)s::integer[]) as minutes
), recent as (
    select provider, model, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd, finished_at
    from job_attempts
    where finished_at >= now() - make_interval(mins => %(max_minutes)s)
      and provider is not null
)
select w.minutes, r.provider, coalesce(r.model, '') as model,
       count(*) as calls,
       percentile_cont(0.5) within group (order by r.latency_ms) as p50_ms,
       percentile_cont(0.95) within group (order by r.latency_ms) as p95_ms,
       coalesce(sum(r.input_tokens), 0) as input_tokens,
       coalesce(sum(r.output_tokens), 0) as output_tokens,
       coalesce(sum(r.reasoning_tokens), 0) as reasoning_tokens,
       coalesce(sum(r.cost_usd), 0) as cost_usd
from w
join recent r on r.finished_at >= now() - make_interval(mins => w.minutes)
group by w.minutes, r.provider, r.model
order by w.minutes, r.provider, model;

-- name: mon_job_series
-- Finished jobs per time bucket over the last `minutes`, for the throughput/latency charts.
select date_bin(make_interval(secs => %(bucket_seconds)s), finished_at, timestamptz '2000-01-01') as bucket,
       count(*) filter (where status = 'completed') as completed,
       count(*) filter (where status = 'failed') as failed,
       percentile_cont(0.5) within group (order by extract(epoch from finished_at - started_at))
           filter (where status = 'completed') as p50,
       percentile_cont(0.95) within group (order by extract(epoch from finished_at - started_at))
           filter (where status = 'completed') as p95
from jobs
where finished_at >= now() - make_interval(mins => %(minutes)s)
group by 1
order by 1;

-- name: mon_provider_series
-- Provider latency per time bucket over the last `minutes`.
select date_bin(make_interval(secs => %(bucket_seconds)s), finished_at, timestamptz '2000-01-01') as bucket,
       count(*) as calls,
       percentile_cont(0.5) within group (order by latency_ms) as p50_ms,
       percentile_cont(0.95) within group (order by latency_ms) as p95_ms
from job_attempts
where finished_at >= now() - make_interval(mins => %(minutes)s)
  and latency_ms is not null
group by 1
order by 1;

-- name: mon_queue_series
-- Queue depth samples over the last `minutes` (written by the maintenance leader).
select sampled_at, pending, processing, oldest_pending_seconds
from queue_samples
where sampled_at >= now() - make_interval(mins => %(minutes)s)
order by sampled_at;

-- name: mon_workers
-- Workers alive, dead (no heartbeat for `dead_after_seconds`) or recently stopped, each with
-- the jobs it holds right now (jobs_lease_expiry_idx: only processing jobs are read).
with held as (
    select lease_owner,
           count(*) as holding,
           jsonb_agg(jsonb_build_object('id', id, 'type', type, 'attempt', attempts, 'started_at', started_at)
                     order by started_at) as jobs
    from jobs
    where status = 'processing'
    group by lease_owner
)
select w.id, w.host, w.pid, w.version, w.concurrency, w.started_at, w.last_heartbeat_at, w.stopped_at,
       w.in_flight,
       case when w.stopped_at is not null then 'stopped'
            when w.last_heartbeat_at < now() - make_interval(secs => %(dead_after_seconds)s) then 'dead'
            else 'alive' end as state,
       extract(epoch from now() - w.last_heartbeat_at)::float8 as heartbeat_age_seconds,
       coalesce(h.holding, 0) as holding,
       coalesce(h.jobs, '[]'::jsonb) as jobs
from workers w
left join held h on h.lease_owner = w.id
where w.stopped_at is null or w.stopped_at > now() - make_interval(mins => %(stopped_minutes)s)
order by (w.stopped_at is null) desc, w.last_heartbeat_at desc
limit 200;

-- name: mon_recent_failures
-- The latest failed jobs (jobs_failed_recent_idx), and whether each was already requeued.
select j.id, j.type, j.user_id, j.error, j.attempts, j.max_attempts, j.cost, j.created_at, j.finished_at,
       (select r.id from jobs r where r.retry_of = j.id order by r.created_at desc limit 1) as requeued_as
from jobs j
where j.status = 'failed'
order by j.finished_at desc
limit %(limit)s;

-- name: mon_queue_sample
-- Record the queue depth now (one cheap read of the live queue).
insert into queue_samples (pending, processing, oldest_pending_seconds)
select count(*) filter (where status = 'pending'),
       count(*) filter (where status = 'processing'),
       extract(epoch from now() - min(created_at) filter (where status = 'pending'))
from jobs
where status in ('pending', 'processing');

-- name: mon_leader_acquire
-- Take or renew the named leader lease; answers a row only while this holder has it.
insert into maintenance_leader (name, holder, expires_at)
values (%(name)s, %(holder)s, now() + make_interval(secs => %(ttl_seconds)s))
on conflict (name) do update
set holder = excluded.holder,
    acquired_at = case when maintenance_leader.holder = excluded.holder
                       then maintenance_leader.acquired_at else now() end,
    renewed_at = now(),
    expires_at = excluded.expires_at
where maintenance_leader.holder = excluded.holder or maintenance_leader.expires_at < now()
returning holder;

-- name: mon_leader_release
delete from maintenance_leader where name = %(name)s and holder = %(holder)s;

-- name: mon_leader_get
select name, holder, acquired_at, renewed_at, expires_at, expires_at > now() as valid
from maintenance_leader
where name = %(name)s;

-- name: mon_prune_jobs
-- Delete one batch of jobs finished before the cutoff, oldest first (jobs_finished_stats_idx).
-- Their attempts go with them (same statement; job_attempts has no foreign key, see 009); the
-- credit ledger has no foreign key to jobs and is never touched. SKIP LOCKED: a row someone
-- else holds waits for the next batch.
with doomed as (
    select id from jobs
    where finished_at < now() - make_interval(secs => %(age_seconds)s)
      and status in ('completed', 'failed', 'cancelled')
    order by finished_at
    limit %(batch)s
    for update skip locked
), attempts_gone as (
    delete from job_attempts a where a.job_id = any(array(select id from doomed))
), gone as (
    delete from jobs j where j.id = any(array(select id from doomed))
    returning 1
)
select count(*) from gone;

-- name: mon_prune_samples
delete from queue_samples where sampled_at < now() - make_interval(secs => %(age_seconds)s);

-- name: mon_prune_workers
-- Forget workers that have not heartbeaten (stopped or dead) for `age_seconds`.
delete from workers where last_heartbeat_at < now() - make_interval(secs => %(age_seconds)s);
