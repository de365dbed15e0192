-- Accounts and their append-only credit ledger, job types, jobs, attempts and workers.
-- Invariant: accounts.balance = sum(credit_ledger.amount) for the account, and >= 0.

create table accounts (
    user_id     uuid primary key,
    balance     bigint not null default 0 check (balance >= 0),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

-- Debit at creation, refund at final failure or cancellation: each at most once per job.
-- No foreign key to jobs: the ledger outlives pruned job history.
create table credit_ledger (
    id          bigint generated always as identity primary key,
    user_id     uuid not null references accounts (user_id),
    job_id      uuid,
    kind        text not null check (kind in ('grant', 'debit', 'refund')),
    amount      bigint not null,
    note        text,
    created_at  timestamptz not null default now(),
    constraint credit_ledger_sign check (
        (kind = 'debit' and amount <= 0 and job_id is not null)
        or (kind = 'refund' and amount >= 0 and job_id is not null)
        or (kind = 'grant' and job_id is null)
    )
);
create unique index credit_ledger_once_per_job on credit_ledger (job_id, kind) where job_id is not null;
create index credit_ledger_user_idx on credit_ledger (user_id, id desc);

create function credit_ledger_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'credit_ledger is append-only (% refused)', tg_op using errcode = 'AJ000';
end
$$;
create trigger credit_ledger_append_only
    before update or delete on credit_ledger
    for each row execute function credit_ledger_append_only();

-- Copied from the Python registry by `aijobs migrate`: the credit function reads cost here.
create table job_types (
    name             text primary key,
    cost             integer not null check (cost >= 0),
    timeout_seconds  real not null check (timeout_seconds > 0),
    enabled          boolean not null default true,
    updated_at       timestamptz not null default now()
);

create type job_status as enum ('pending', 'processing', 'completed', 'failed', 'cancelled');

-- Every claim takes a fresh token; every write that ends an attempt must present it (fencing).
create sequence job_lease_seq;

create table jobs (
    id                uuid primary key default gen_random_uuid(),
    user_id           uuid not null references accounts (user_id),
    type              text not null references job_types (name),
    payload           jsonb not null check (jsonb_typeof(payload) = 'object'),
    status            job_status not null default 'pending',
    priority          smallint not null default 0 check (priority between -100 and 100),
    run_at            timestamptz not null default now(),
    attempts          integer not null default 0 check (attempts >= 0),
    max_attempts      integer not null default 4 check (max_attempts between 1 and 100),
    result            jsonb,
    error             text,
    cost              integer not null check (cost >= 0),
    idempotency_key   text check (length(idempotency_key) between 1 and 255),
    retry_of          uuid references jobs (id) on delete set null,
    lease_token       bigint,
    lease_owner       text,
    lease_expires_at  timestamptz,
    cancel_requested  boolean not null default false,
    created_at        timestamptz not null default now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz not null default now(),
    constraint jobs_idempotency_unique unique (user_id, idempotency_key),
    constraint jobs_lease_when_processing check (
        status <> 'processing' or (lease_token is not null and lease_expires_at is not null)
    ),
    constraint jobs_finished_when_terminal check (
        (status in ('completed', 'failed', 'cancelled')) = (finished_at is not null)
    )
);
-- The claim query walks this index in order and stops after LIMIT rows.
create index jobs_claim_idx on jobs (priority desc, run_at, created_at) where status = 'pending';
-- The rescuer finds expired leases without touching finished history.
create index jobs_lease_expiry_idx on jobs (lease_expires_at) where status = 'processing';
create index jobs_user_created_idx on jobs (user_id, created_at desc, id desc);
create index jobs_finished_idx on jobs (finished_at) where finished_at is not null;
create index jobs_retry_of_idx on jobs (retry_of) where retry_of is not null;

-- One row per claim. Keyed by the lease token, so a late writer can only touch its own row.
create table job_attempts (
    lease_token       bigint primary key,
    job_id            uuid not null references jobs (id) on delete cascade,
    attempt           integer not null,
    worker_id         text not null,
    started_at        timestamptz not null default now(),
    finished_at       timestamptz,
    outcome           text check (outcome in (
        'completed', 'retry', 'failed', 'cancelled', 'lost', 'handed_back', 'rate_limited', 'superseded'
    )),
    error             text,
    provider          text,
    model             text,
    request_id        text,
    latency_ms        real,
    input_tokens      integer,
    output_tokens     integer,
    reasoning_tokens  integer,
    cost_usd          numeric(14, 8)
);
create index job_attempts_job_idx on job_attempts (job_id);
create index job_attempts_finished_idx on job_attempts (finished_at) where finished_at is not null;

create table workers (
    id                 text primary key,
    host               text not null,
    pid                integer not null,
    version            text not null,
    concurrency        integer not null,
    started_at         timestamptz not null default now(),
    last_heartbeat_at  timestamptz not null default now(),
    stopped_at         timestamptz,
    in_flight          integer not null default 0
);
