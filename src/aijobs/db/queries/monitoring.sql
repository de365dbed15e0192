-- Monitoring: stats, dashboard, queue samples, maintenance leader and retention.
-- Every read here is bounded by a time window or by the live part of the queue, and walks
-- an index of its own (schema.sql), so it costs the same with 1M finished jobs as with 1k.

-- name: mon_queue_depth
-- Pending and processing jobs per type (jobs_active_idx: only the live queue is read).
select type, status::text as status, count(*) as count
from aijobs.jobs
where status in ('pending', 'processing')
group by type, status
order by type, status;

-- name: mon_top_tenants
-- The tenants (`jobs.tenant`: users, or organisations) with the most jobs waiting, then
-- running: who is queueing what while they take turns, with each one's weight and limit on
-- running jobs (its own, else the deployment's; null: none). Reads the live queue only. For
-- stats, the admin API and the dashboard; metrics carry no per-user label.
select d.tenant, d.pending, d.processing, coalesce(t.weight, 1) as weight,
       coalesce(t.max_running, (select s.max_running_per_tenant from aijobs.settings s)) as max_running
from (
    select tenant,
           count(*) filter (where status = 'pending') as pending,
           count(*) filter (where status = 'processing') as processing
    from aijobs.jobs
    where status in ('pending', 'processing')
    group by tenant
    order by 2 desc, 3 desc, 1
    limit %(limit)s
) d
left join aijobs.tenants t on t.tenant = d.tenant
order by d.pending desc, d.processing desc, d.tenant;

-- name: mon_oldest_pending
-- The longest a pending job has been waiting to run: seconds since the earliest run_at that
-- has passed (null when no pending job may run yet). Jobs scheduled ahead or backing off
-- are not waiting on the workers, so they do not count, and a retried job waits from the
-- end of its backoff, not from its creation. Reads the live queue only (jobs_active_idx).
select extract(epoch from now() - min(run_at))::float8 as seconds
from aijobs.jobs
where status = 'pending' and run_at <= now();

-- name: mon_job_windows
-- Finished jobs per window (minutes): counts and queue wait (creation to first claim) of
-- completed jobs from jobs_finished_stats_idx; processing time (p50, p95, avg) from the
-- attempts that completed a job in the window (job_attempts_stats_idx), claim to finish of
-- that one attempt, as the histogram aijobs_job_processing_seconds measures it. The span
-- from a job's first claim would add its retries' backoff and its rate-limit holds.
with w as (
    select unnest(%(windows)s::integer[]) as minutes
), recent as (
    select status, attempts, finished_at,
           extract(epoch from started_at - created_at)::float8 as wait
    from aijobs.jobs
    where finished_at >= now() - make_interval(mins => %(max_minutes)s)
), completing as (
    select finished_at, extract(epoch from finished_at - started_at)::float8 as seconds
    from aijobs.job_attempts
    where finished_at >= now() - make_interval(mins => %(max_minutes)s)
      and outcome = 'completed'
), jobs_by_window as (
    select w.minutes,
           count(r.status) filter (where r.status = 'completed') as completed,
           count(r.status) filter (where r.status = 'failed') as failed,
           count(r.status) filter (where r.status = 'cancelled') as cancelled,
           count(r.status) filter (where r.status = 'completed' and r.attempts > 1) as completed_after_retry,
           avg(r.wait) filter (where r.status = 'completed') as avg_wait
    from w
    left join recent r on r.finished_at >= now() - make_interval(mins => w.minutes)
    group by w.minutes
), attempts_by_window as (
    select w.minutes,
           percentile_cont(0.5) within group (order by c.seconds) as p50,
           percentile_cont(0.95) within group (order by c.seconds) as p95,
           avg(c.seconds) as avg
    from w
    left join completing c on c.finished_at >= now() - make_interval(mins => w.minutes)
    group by w.minutes
)
select j.minutes, j.completed, j.failed, j.cancelled, j.completed_after_retry,
       a.p50, a.p95, a.avg, j.avg_wait
from jobs_by_window j
join attempts_by_window a using (minutes)
order by j.minutes;

-- name: mon_attempt_windows
-- Attempts that ended per window, by outcome: retries, rescues (lost), rate limits.
with w as (
    select unnest(%(windows)s::integer[]) as minutes
), recent as (
    select outcome, finished_at
    from aijobs.job_attempts
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
    from aijobs.job_attempts
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
-- Finished jobs per time bucket over the last `minutes`, for the throughput/latency charts;
-- processing time as in mon_job_windows (the completing attempt's own duration).
with finished as (
    select date_bin(make_interval(secs => %(bucket_seconds)s), finished_at, timestamptz '2000-01-01') as bucket,
           count(*) filter (where status = 'completed') as completed,
           count(*) filter (where status = 'failed') as failed
    from aijobs.jobs
    where finished_at >= now() - make_interval(mins => %(minutes)s)
    group by 1
), completing as (
    select date_bin(make_interval(secs => %(bucket_seconds)s), finished_at, timestamptz '2000-01-01') as bucket,
           percentile_cont(0.5) within group (order by extract(epoch from finished_at - started_at)) as p50,
           percentile_cont(0.95) within group (order by extract(epoch from finished_at - started_at)) as p95
    from aijobs.job_attempts
    where finished_at >= now() - make_interval(mins => %(minutes)s)
      and outcome = 'completed'
    group by 1
)
select bucket, coalesce(f.completed, 0) as completed, coalesce(f.failed, 0) as failed, c.p50, c.p95
from finished f
full join completing c using (bucket)
order by bucket;

-- name: mon_provider_series
-- Provider latency per time bucket over the last `minutes`.
select date_bin(make_interval(secs => %(bucket_seconds)s), finished_at, timestamptz '2000-01-01') as bucket,
       count(*) as calls,
       percentile_cont(0.5) within group (order by latency_ms) as p50_ms,
       percentile_cont(0.95) within group (order by latency_ms) as p95_ms
from aijobs.job_attempts
where finished_at >= now() - make_interval(mins => %(minutes)s)
  and latency_ms is not null
group by 1
order by 1;

-- name: mon_queue_series
-- Queue depth samples over the last `minutes` (written by the maintenance leader).
select sampled_at, pending, processing, oldest_pending_seconds
from aijobs.queue_samples
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
    from aijobs.jobs
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
from aijobs.workers w
left join held h on h.lease_owner = w.id
where w.stopped_at is null or w.stopped_at > now() - make_interval(mins => %(stopped_minutes)s)
order by (w.stopped_at is null) desc, w.last_heartbeat_at desc
limit 200;

-- name: mon_recent_failures
-- The latest failed jobs (jobs_failed_recent_idx), and whether each was already requeued.
select j.id, j.type, j.user_id, j.error, j.attempts, j.max_attempts, j.cost, j.created_at, j.finished_at,
       (select r.id from aijobs.jobs r where r.retry_of = j.id order by r.created_at desc limit 1) as requeued_as
from aijobs.jobs j
where j.status = 'failed'
order by j.finished_at desc
limit %(limit)s;

-- name: mon_queue_sample
-- Record the queue depth now (one cheap read of the live queue), and the longest wait of a
-- runnable job as mon_oldest_pending measures it.
insert into aijobs.queue_samples (pending, processing, oldest_pending_seconds)
select count(*) filter (where status = 'pending'),
       count(*) filter (where status = 'processing'),
       extract(epoch from now() - min(run_at) filter (where status = 'pending' and run_at <= now()))
from aijobs.jobs
where status in ('pending', 'processing');

-- name: mon_leader_acquire
-- Take or renew the named leader lease; answers a row only while this holder has it.
insert into aijobs.maintenance_leader (name, holder, expires_at)
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
delete from aijobs.maintenance_leader where name = %(name)s and holder = %(holder)s;

-- name: mon_leader_get
select name, holder, acquired_at, renewed_at, expires_at, expires_at > now() as valid
from aijobs.maintenance_leader
where name = %(name)s;

-- name: mon_prune_jobs
-- Delete one batch of jobs finished before the cutoff, oldest first (jobs_finished_stats_idx).
-- Their attempts go with them (same statement; job_attempts has no foreign key); the
-- credit ledger has no foreign key to jobs and is never touched. SKIP LOCKED: a row someone
-- else holds waits for the next batch.
with doomed as (
    select id from aijobs.jobs
    where finished_at < now() - make_interval(secs => %(age_seconds)s)
      and status in ('completed', 'failed', 'cancelled')
    order by finished_at
    limit %(batch)s
    for update skip locked
), attempts_gone as (
    delete from aijobs.job_attempts a where a.job_id = any(array(select id from doomed))
), gone as (
    delete from aijobs.jobs j where j.id = any(array(select id from doomed))
    returning 1
)
select count(*) from gone;

-- name: mon_prune_samples
delete from aijobs.queue_samples where sampled_at < now() - make_interval(secs => %(age_seconds)s);

-- name: mon_prune_workers
-- Forget workers that have not heartbeaten (stopped or dead) for `age_seconds`.
delete from aijobs.workers where last_heartbeat_at < now() - make_interval(secs => %(age_seconds)s);
