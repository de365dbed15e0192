-- The job types the registry declares, as the creation function reads them.

-- name: job_types_sync
insert into aijobs.job_types (name, cost, timeout_seconds)
select * from unnest(%(names)s::text[], %(costs)s::integer[], %(timeouts)s::real[])
on conflict (name) do update
set cost = excluded.cost, timeout_seconds = excluded.timeout_seconds, updated_at = now()
where (job_types.cost, job_types.timeout_seconds) is distinct from (excluded.cost, excluded.timeout_seconds);
