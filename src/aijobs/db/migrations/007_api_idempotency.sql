-- The HTTP API's Idempotency-Key store (Stripe's semantics): the first request with a key
-- records a hash of what was asked and the response it got; the same key with the same
-- request replays that response, with another request it is refused. Keys are scoped per
-- user and kept at least 24 hours (`api_idempotency_purge` removes only older ones).
--
-- A row is written in the same transaction as the job it describes, so a refused request
-- (402, 429, ...) leaves no row behind and nothing charged: the client may retry the key.
-- Concurrent requests with one key queue on the primary key until the first commits.
create table api_idempotency_keys (
    user_id          uuid not null,
    key              text not null check (length(key) between 1 and 255),
    request_hash     text not null,
    response_status  integer check (response_status between 100 and 599),
    response_body    jsonb,
    job_id           uuid,
    created_at       timestamptz not null default now(),
    primary key (user_id, key)
);
create index api_idempotency_keys_created_idx on api_idempotency_keys (created_at);

-- Row-level security is the enforcement here too: a request sees and writes only its own keys.
alter table api_idempotency_keys enable row level security;
alter table api_idempotency_keys force row level security;

create policy api_idempotency_keys_own_select on api_idempotency_keys
    for select to authenticated using (user_id = auth.uid());
create policy api_idempotency_keys_own_insert on api_idempotency_keys
    for insert to authenticated with check (user_id = auth.uid());
create policy api_idempotency_keys_own_update on api_idempotency_keys
    for update to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());

do $$
declare
    r text;
begin
    foreach r in array array['service_role', current_user::text] loop
        execute format(
            'create policy %I on api_idempotency_keys for all to %I using (true) with check (true)',
            'api_idempotency_keys_all_' || r, r
        );
    end loop;
end
$$;

grant select, insert, update on api_idempotency_keys to authenticated;
grant all on api_idempotency_keys to service_role;
