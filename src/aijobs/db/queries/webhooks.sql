-- Webhook endpoints, the outbox of deliveries and its attempt log (aijobs.webhook_*).
-- `user_id` null names the deployment's own endpoints; every read and write of an endpoint is
-- scoped to one owner with `is not distinct from`, so an account never reaches another's.

-- name: webhook_endpoint_lock_owner
-- Held until the transaction ends: one owner's endpoint creations are counted one at a time.
select pg_advisory_xact_lock(hashtext('aijobs.webhook_endpoints'), hashtext(coalesce(%(user_id)s::text, '')));

-- name: webhook_endpoint_create
-- Refused (no row) past `max` endpoints for the owner: each one multiplies every job end.
insert into aijobs.webhook_endpoints (user_id, url, secret, events, description)
select %(user_id)s, %(url)s, %(secret)s, %(events)s, %(description)s
where (select count(*) from aijobs.webhook_endpoints w where w.user_id is not distinct from %(user_id)s)
      < %(max)s
returning id, user_id, url, events, description, enabled, created_at;

-- name: webhook_endpoint_list
select id, user_id, url, events, description, enabled, created_at
from aijobs.webhook_endpoints where user_id is not distinct from %(user_id)s
order by created_at, id;

-- name: webhook_endpoint_get
select id, user_id, url, events, description, enabled, created_at
from aijobs.webhook_endpoints where id = %(id)s and user_id is not distinct from %(user_id)s;

-- name: webhook_endpoint_delete
-- Its deliveries and their log go with it (foreign keys, on delete cascade).
delete from aijobs.webhook_endpoints where id = %(id)s and user_id is not distinct from %(user_id)s
returning id;

-- name: webhook_delivery_page
-- Newest first; `before` is the last id of the previous page (ids are time-ordered).
select d.id, d.endpoint_id, d.job_id, d.event, d.status, d.attempts, d.next_attempt_at,
       d.last_status_code, d.last_error, d.delivered_at, d.created_at, d.updated_at
from aijobs.webhook_deliveries d
join aijobs.webhook_endpoints e on e.id = d.endpoint_id
where d.endpoint_id = %(endpoint_id)s and e.user_id is not distinct from %(user_id)s
  and (%(before)s::uuid is null or d.id < %(before)s::uuid)
order by d.id desc
limit %(limit)s;

-- name: webhook_delivery_attempts
select a.delivery_id, a.attempt, a.attempted_at, a.status_code, a.error, a.duration_ms
from aijobs.webhook_delivery_attempts a
where a.delivery_id = any(%(ids)s::uuid[])
order by a.delivery_id, a.attempt;

-- name: webhook_delivery_replay
-- Sent again, soon, with the same id and body, and a fresh retry window.
with replayed as (
    update aijobs.webhook_deliveries d
    set status = 'pending', next_attempt_at = now(), retry_from = now(), updated_at = now()
    from aijobs.webhook_endpoints e
    where d.id = %(id)s and d.endpoint_id = %(endpoint_id)s and e.id = d.endpoint_id
      and e.user_id is not distinct from %(user_id)s
    returning d.id
)
select id, pg_notify('aijobs_webhooks', '') from replayed;

-- name: webhook_delivery_claim
-- Due deliveries for this worker; the claim moves next_attempt_at past the attempt's time
-- limit, so one left by a worker that died is tried again then (at least once).
with due as (
    select d.id from aijobs.webhook_deliveries d
    where d.status = 'pending' and d.next_attempt_at <= now()
    order by d.next_attempt_at
    limit %(n)s
    for update skip locked
)
update aijobs.webhook_deliveries d
set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
from due, aijobs.webhook_endpoints e
where d.id = due.id and e.id = d.endpoint_id
returning d.id, d.event, d.payload::text as body, d.attempts, e.url, e.secret;

-- name: webhook_delivery_record
-- The end of one attempt, only if no later claim took the delivery meanwhile. Past the
-- retry window a failure is final.
with done as (
    update aijobs.webhook_deliveries d
    set status = case
            when %(ok)s then 'delivered'
            when now() + make_interval(secs => %(retry_in)s)
                 > d.retry_from + make_interval(secs => %(window_seconds)s) then 'failed'
            else 'pending'
        end,
        next_attempt_at = case when %(ok)s then d.next_attempt_at
                               else now() + make_interval(secs => %(retry_in)s) end,
        delivered_at = case when %(ok)s then now() else d.delivered_at end,
        last_status_code = %(status_code)s, last_error = %(error)s, updated_at = now()
    where d.id = %(id)s and d.attempts = %(attempt)s and d.status = 'pending'
    returning d.id, d.status
), logged as (
    insert into aijobs.webhook_delivery_attempts (delivery_id, attempt, status_code, error, duration_ms, worker_id)
    select id, %(attempt)s, %(status_code)s, %(error)s, %(duration_ms)s, %(worker_id)s from done
    on conflict do nothing
)
select status from done;

-- name: webhook_delivery_prune
-- Finished deliveries older than the retention, one batch (their attempts go with them).
-- Locked as they are read: a delivery being replayed (set pending again) at that moment is
-- skipped, or read again as pending after the replay commits, never deleted under it.
with gone as (
    delete from aijobs.webhook_deliveries where id in (
        select id from aijobs.webhook_deliveries
        where status <> 'pending' and updated_at < now() - make_interval(secs => %(age_seconds)s)
        limit %(batch)s
        for update skip locked
    )
    returning 1
)
select count(*) from gone;

-- name: webhook_delivery_recent
-- The dashboard's panel: the latest deliveries of every endpoint.
select d.id, d.endpoint_id, e.url, e.user_id, d.job_id, d.event, d.status, d.attempts,
       d.last_status_code, d.last_error, d.next_attempt_at, d.updated_at
from aijobs.webhook_deliveries d
join aijobs.webhook_endpoints e on e.id = d.endpoint_id
order by d.id desc
limit %(limit)s;

-- name: webhook_delivery_replay_any
-- The dashboard's replay (admins): any endpoint's delivery.
with replayed as (
    update aijobs.webhook_deliveries d
    set status = 'pending', next_attempt_at = now(), retry_from = now(), updated_at = now()
    where d.id = %(id)s
    returning d.id
)
select id, pg_notify('aijobs_webhooks', '') from replayed;
