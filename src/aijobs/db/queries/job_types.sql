-- The job types the registry declares, as the creation function reads them.

-- name: job_types_sync
insert into aijobs.job_types (name, cost, timeout_seconds)
select * from unnest(%(names)s::text[], %(costs)s::integer[], %(timeouts)s::real[])
on conflict (name) do update
set cost = excluded.cost, timeout_seconds = excluded.timeout_seconds, updated_at = now()
where (job_types.cost, job_types.timeout_seconds) is distinct from (excluded.cost, excluded.timeout_seconds);

-- name: job_types_list
-- Every type the database knows, with how many of its jobs wait: what a worker compares
-- with its own registry at start, and what `aijobs types` and the admin API show.
select t.name, t.cost, t.timeout_seconds::float8 as timeout_seconds, t.enabled, t.paused,
       (select count(*) from aijobs.jobs j where j.type = t.name and j.status = 'pending')::int as pending
from aijobs.job_types t
order by t.name;

-- name: job_types_switches
-- The deployment's switches of every type, without counting jobs: the dashboard reads it at
-- every refresh and takes the pending counts from the queue depth it reads anyway.
select name, enabled, paused, max_running_per_tenant from aijobs.job_types order by name;

-- name: job_type_switch
-- A disabled type's creations are refused (AJ007) and its pending jobs still run; a paused
-- type's creations are accepted and its pending jobs wait, unclaimed, until it is resumed.
-- A type's own limit on running jobs per tenant: 0 removes it. A switch given as null stays as
-- it is.
update aijobs.job_types
set enabled = coalesce(%(enabled)s::boolean, enabled),
    paused = coalesce(%(paused)s::boolean, paused),
    max_running_per_tenant = case when %(max_running)s::integer is null then max_running_per_tenant
                                  else nullif(%(max_running)s::integer, 0) end,
    updated_at = now()
where name = %(name)s
returning name, enabled, paused, max_running_per_tenant;

-- name: job_type_wake
-- Sent on resume: idle workers claim the jobs that waited now rather than at their next poll.
select pg_notify('aijobs_jobs', %(name)s::text);
