-- Monitoring: indexes that keep dashboard and stats queries proportional to the window they
-- look at (not to history), queue-depth samples for charts, and the maintenance leader lease.

-- Windowed stats read finished jobs by time. The covering columns let the planner answer
-- from the index alone (index-only scan) once the visibility map is set by vacuum.
create index jobs_finished_stats_idx on jobs (finished_at)
    include (status, type, attempts, started_at, created_at)
    where finished_at is not null;
-- It has the same key as 002's jobs_finished_idx, which retention also used; one is enough.
drop index jobs_finished_idx;

-- Queue depth and the oldest pending job read only the live part of the queue.
create index jobs_active_idx on jobs (status, created_at) include (type)
    where status in ('pending', 'processing');

-- "Latest failures" walks this backwards and stops after LIMIT rows.
create index jobs_failed_recent_idx on jobs (finished_at desc) where status = 'failed';

-- Provider latency, tokens and cost per window, from the attempts of that window only.
create index job_attempts_stats_idx on job_attempts (finished_at)
    include (outcome, provider, model, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd)
    where finished_at is not null;
drop index job_attempts_finished_idx;

-- Queue depth cannot be reconstructed for the past, so the maintenance leader samples it.
create table queue_samples (
    sampled_at  timestamptz not null default now(),
    pending     integer not null,
    processing  integer not null,
    oldest_pending_seconds real
);
create index queue_samples_at_idx on queue_samples (sampled_at);

-- One row per maintenance role. The holder renews before `expires_at`; anyone may take it
-- after, judged by the database clock (the same rule as job leases).
create table maintenance_leader (
    name        text primary key,
    holder      text not null,
    acquired_at timestamptz not null default now(),
    renewed_at  timestamptz not null default now(),
    expires_at  timestamptz not null
);

create index workers_heartbeat_idx on workers (last_heartbeat_at);

-- Same stance as 004: no access for `anon`/`authenticated`; the owner and service_role by policy.
do $$
declare
    t text;
    r text;
begin
    foreach t in array array['queue_samples', 'maintenance_leader'] loop
        execute format('alter table %I enable row level security', t);
        execute format('alter table %I force row level security', t);
        foreach r in array array['service_role', current_user::text] loop
            execute format(
                'create policy %I on %I for all to %I using (true) with check (true)',
                t || '_all_' || r, t, r
            );
        end loop;
    end loop;
end
$$;
grant all on queue_samples, maintenance_leader to service_role;
