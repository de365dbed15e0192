-- The HTTP API's Idempotency-Key store (aijobs.api_idempotency_keys), written only by the
-- API's own role, in the transaction of the creation it describes.

-- name: api_idempotency_claim
-- Returns a row only for the request that inserted the key. A concurrent request with the
-- same key waits here until that transaction ends, then gets nothing and reads the row.
insert into aijobs.api_idempotency_keys (user_id, key, request_hash)
values (%(user_id)s, %(key)s, %(request_hash)s)
on conflict (user_id, key) do nothing
returning key;

-- name: api_idempotency_get
select request_hash, response_status, response_body, job_id, created_at
from aijobs.api_idempotency_keys where user_id = %(user_id)s and key = %(key)s;

-- name: api_idempotency_save
update aijobs.api_idempotency_keys
set response_status = %(status)s, response_body = %(body)s, job_id = %(job_id)s
where user_id = %(user_id)s and key = %(key)s;

-- name: api_idempotency_purge
-- Forget keys older than the retention (never less than 24 hours: callers clamp it).
delete from aijobs.api_idempotency_keys where created_at < now() - make_interval(secs => %(hours)s * 3600.0);
