-- name: worker_register
insert into workers (id, host, pid, version, concurrency)
values (%(id)s, %(host)s, %(pid)s, %(version)s, %(concurrency)s)
on conflict (id) do update set last_heartbeat_at = now(), stopped_at = null;

-- name: worker_beat
update workers set last_heartbeat_at = now(), in_flight = %(in_flight)s where id = %(id)s;

-- name: worker_stop
update workers set stopped_at = now(), in_flight = 0 where id = %(id)s;

-- name: job_types_sync
insert into job_types (name, cost, timeout_seconds)
select * from unnest(%(names)s::text[], %(costs)s::integer[], %(timeouts)s::real[])
on conflict (name) do update
set cost = excluded.cost, timeout_seconds = excluded.timeout_seconds, updated_at = now()
where (job_types.cost, job_types.timeout_seconds) is distinct from (excluded.cost, excluded.timeout_seconds);
