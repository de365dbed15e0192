-- name: worker_register
insert into aijobs.workers (id, host, pid, version, concurrency)
values (%(id)s, %(host)s, %(pid)s, %(version)s, %(concurrency)s)
on conflict (id) do update set last_heartbeat_at = now(), stopped_at = null;

-- name: worker_beat
update aijobs.workers set last_heartbeat_at = now(), in_flight = %(in_flight)s where id = %(id)s;

-- name: worker_stop
update aijobs.workers set stopped_at = now(), in_flight = 0 where id = %(id)s;
