-- Named queries of the HTTP API (aijobs.api). Requests run them as `authenticated` with the
-- JWT claims set locally, so row-level security, not these WHERE clauses, decides what a user
-- may see; admin endpoints run the same queries as the owner role.

-- name: api_job_get
select id, user_id, type, payload, status::text as status, priority, run_at, attempts, max_attempts,
       result, error, cost, idempotency_key, retry_of, cancel_requested,
       created_at, started_at, finished_at, updated_at
from jobs where id = %(id)s;

-- name: api_job_status
select status::text as status from jobs where id = %(id)s;

-- name: api_in_flight_count
select count(*) as in_flight from jobs
where user_id = %(user_id)s and status in ('pending', 'processing');

-- name: api_balance
select balance from accounts where user_id = %(user_id)s;

-- name: api_ledger_page
-- Newest first, keyset-paginated on the ledger's identity column.
select id, job_id, kind, amount, note, created_at from credit_ledger
where user_id = %(user_id)s and (%(before_id)s::bigint is null or id < %(before_id)s::bigint)
order by id desc
limit %(limit)s;

-- name: api_idempotency_claim
-- Returns a row only for the request that inserted the key. A concurrent request with the
-- same key waits here until that transaction ends, then gets nothing and reads the row.
insert into api_idempotency_keys (user_id, key, request_hash)
values (%(user_id)s, %(key)s, %(request_hash)s)
on conflict (user_id, key) do nothing
returning key;

-- name: api_idempotency_get
select request_hash, response_status, response_body, job_id, created_at
from api_idempotency_keys where user_id = %(user_id)s and key = %(key)s;

-- name: api_idempotency_save
update api_idempotency_keys
set response_status = %(status)s, response_body = %(body)s, job_id = %(job_id)s
where user_id = %(user_id)s and key = %(key)s;

-- name: api_idempotency_purge
-- Forget keys older than the retention (never less than 24 hours: callers clamp it).
delete from api_idempotency_keys where created_at < now() - make_interval(secs => %(hours)s * 3600.0);

-- name: api_applied_migrations
-- /readyz asks on a pooled connection: a probe must not open a connection of its own per call.
select version from schema_migrations;
