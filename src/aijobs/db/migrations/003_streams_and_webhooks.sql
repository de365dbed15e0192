-- Migration 003: streaming replies as the model writes them, and webhooks, so servers hear
-- when a job ends without polling.
--
-- Streaming: `job_stream_chunks` holds what a running attempt has written so far (coalesced
-- by the worker, fenced by its lease token), so SSE subscribers who join late or resume read
-- it; NOTIFY aijobs_job_stream carries only ids.
--
-- Webhooks: the endpoints (an account's own, or the deployment's with user_id null), the
-- outbox of deliveries and their attempt log, and a trigger that writes the outbox rows in
-- the transaction that ends a job (completed, failed, cancelled), as the refund trigger does:
-- a rolled-back end leaves no row, a committed one always has its rows, at most once each
-- (unique index). Workers deliver them (LISTEN aijobs_webhooks).
--
-- Every new table has row-level security forced with the owner's and service_role's
-- policies, and nothing is granted to anon or authenticated: the API and the workers write
-- these tables as their own role, for the user they serve.

-- Streaming ---------------------------------------------------------------------------------

-- The text a running attempt has written so far of a type's streamable answer (the reply of
-- `ai_generation`), in pieces the worker coalesces (the first at once, then at most one write
-- per job every 50 ms), so that a subscriber who joins late or resumes (Last-Event-ID) reads
-- it here; the NOTIFY on `aijobs_job_stream` carries only "<job id> <lease token> <seq>".
-- Only the attempt holding the job's lease may write (the fence); a new lease token is a new
-- attempt, which subscribers are told to reset for. Pieces of attempts that ended are pruned
-- by the maintenance leader; the job's result stays the one validated write.
create table aijobs.job_stream_chunks (
    job_id       uuid not null,
    lease_token  bigint not null,
    seq          integer not null check (seq >= 1),
    text         text not null,
    created_at   aijobs.instant not null default now(),
    primary key (job_id, lease_token, seq)
);
create index job_stream_chunks_created_idx on aijobs.job_stream_chunks (created_at);

-- Webhooks ----------------------------------------------------------------------------------

-- Where to tell servers that a job ended: an account's own endpoint (user_id set, for its
-- jobs) or the deployment's (user_id null, for every job). Written only by the API's and
-- the CLI's own role; the secret signs every delivery (Standard Webhooks, HMAC-SHA256).
create table aijobs.webhook_endpoints (
    id           uuid primary key default aijobs.uuid_v7(),
    user_id      uuid,
    url          text not null check (length(url) <= 2048 and url ~ '^https?://'),
    secret       text not null check (secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    events       text[] not null check (
        cardinality(events) between 1 and 3
        and events <@ array['job.completed', 'job.failed', 'job.cancelled']
    ),
    description  text check (length(description) <= 200),
    enabled      boolean not null default true,
    created_at   aijobs.instant not null default now(),
    updated_at   aijobs.instant not null default now()
);
create index webhook_endpoints_user_idx on aijobs.webhook_endpoints (user_id) where enabled;

-- The outbox: one row per job end and endpoint, written by the trigger below in the very
-- transaction that ends the job (so no end is lost and none is invented), then delivered at
-- least once by the workers, its id sent as `webhook-id` so receivers can drop repeats.
create table aijobs.webhook_deliveries (
    id                uuid primary key default aijobs.uuid_v7(),
    endpoint_id       uuid not null references aijobs.webhook_endpoints (id) on delete cascade,
    job_id            uuid not null,
    user_id           uuid not null,
    event             text not null,
    payload           jsonb not null,
    status            text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    attempts          integer not null default 0 check (attempts >= 0),
    -- While pending: when a worker may next try it (a claim moves it past the attempt's
    -- time limit, so a worker that dies mid-attempt leaves it to another).
    next_attempt_at   aijobs.instant not null default now(),
    -- Retries stop this long after this time (the first write, or the last replay).
    retry_from        aijobs.instant not null default now(),
    last_status_code  integer,
    last_error        text,
    delivered_at      aijobs.instant,
    created_at        aijobs.instant not null default now(),
    updated_at        aijobs.instant not null default now()
);
-- At most one delivery per job end and endpoint, however often the end is written.
create unique index webhook_deliveries_once on aijobs.webhook_deliveries (endpoint_id, job_id, event);
create index webhook_deliveries_due_idx on aijobs.webhook_deliveries (next_attempt_at) where status = 'pending';
create index webhook_deliveries_endpoint_idx on aijobs.webhook_deliveries (endpoint_id, id desc);
create index webhook_deliveries_done_idx on aijobs.webhook_deliveries (updated_at) where status <> 'pending';

-- The delivery log: what each attempt got back.
create table aijobs.webhook_delivery_attempts (
    delivery_id   uuid not null references aijobs.webhook_deliveries (id) on delete cascade,
    attempt       integer not null,
    attempted_at  aijobs.instant not null default now(),
    status_code   integer,
    error         text,
    duration_ms   real,
    worker_id     text,
    primary key (delivery_id, attempt)
);

-- A job that ends leaves one outbox row per enabled endpoint subscribed to that end (its
-- account's and the deployment's) in the transaction that ends it, like the refund; a
-- worker listening on `aijobs_webhooks` delivers it. The payload is the job's end as stored:
-- never its input.
create function aijobs.webhook_outbox_on_terminal() returns trigger
language plpgsql
security definer
set search_path = aijobs, pg_temp
as $$
declare
    v_event text := 'job.' || new.status::text;
begin
    insert into aijobs.webhook_deliveries (endpoint_id, job_id, user_id, event, payload)
    select e.id, new.id, new.user_id, v_event, jsonb_build_object(
        'type', v_event,
        'timestamp', new.finished_at,
        'data', jsonb_build_object(
            'id', new.id, 'type', new.type, 'status', new.status, 'user_id', new.user_id,
            'attempts', new.attempts, 'result', new.result, 'error', new.error,
            'created_at', new.created_at, 'finished_at', new.finished_at))
    from aijobs.webhook_endpoints e
    where e.enabled and (e.user_id is null or e.user_id = new.user_id) and v_event = any(e.events)
    on conflict (endpoint_id, job_id, event) do nothing;
    if found then
        perform pg_notify('aijobs_webhooks', '');
    end if;
    return null;
end
$$;
create trigger jobs_webhook_outbox_on_terminal
    after update of status on aijobs.jobs
    for each row
    when (new.status in ('completed', 'failed', 'cancelled') and old.status is distinct from new.status)
    execute function aijobs.webhook_outbox_on_terminal();

do $$
declare
    t text;
    r text;
begin
    foreach t in array array[
        'job_stream_chunks', 'webhook_endpoints', 'webhook_deliveries', 'webhook_delivery_attempts'
    ] loop
        execute format('alter table aijobs.%I enable row level security', t);
        execute format('alter table aijobs.%I force row level security', t);
        foreach r in array array['service_role', current_user::text] loop
            execute format(
                'create policy %I on aijobs.%I for all to %I using (true) with check (true)',
                t || '_all_' || r, t, r
            );
        end loop;
    end loop;
end
$$;

-- Exactly these privileges, whatever default privileges the database adds.
revoke all on aijobs.job_stream_chunks, aijobs.webhook_endpoints, aijobs.webhook_deliveries,
    aijobs.webhook_delivery_attempts
    from public, anon, authenticated, service_role;
grant select, insert, update, delete
    on aijobs.job_stream_chunks, aijobs.webhook_endpoints, aijobs.webhook_deliveries,
       aijobs.webhook_delivery_attempts
    to service_role;
revoke all on function aijobs.webhook_outbox_on_terminal() from public, anon, authenticated, service_role;
