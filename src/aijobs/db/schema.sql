-- The aijobs schema as it is now, in one file.
--
-- Everything aijobs owns lives in schema `aijobs`: nothing is created in `public`, so the
-- product's own `accounts`, `jobs` or `schema_migrations` are never touched. Outside it,
-- only what Supabase itself provides is created, and only where missing: the roles `anon`,
-- `authenticated` and `service_role`, and `auth.uid()`.
--
-- tests/integration/test_schema_file.py builds one database from this file and one from
-- the migrations and requires their catalogs to be equal: a migration that changes the
-- schema changes this file too.
--
-- Rules every function granted to a user role follows (Supabase exposes such functions as
-- RPC endpoints): every value the HTTP API refuses is refused here too, limits come from
-- `aijobs.settings` (never from arguments), and acting for another user needs membership of
-- `service_role` or of the schema's owner, never a role's name.
--
-- Refusals raise SQLSTATE class AJ with a JSON detail, mapped to Python exceptions in
-- aijobs.db.refusals:
--   AJ001 unknown job type              AJ002 unknown user  AJ003 insufficient credits
--   AJ004 forbidden                     AJ005 invalid argument ({"field", "reason"})
--   AJ006 too many jobs in flight       AJ007 job type disabled in this deployment
--   AJ008 an idempotency key already used for another request

-- Supabase's roles and auth.uid() ----------------------------------------------------------

-- Roles are cluster-wide and several databases may migrate at once (tests do): a concurrent
-- creation is tolerated rather than failing the migration.
do $$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                execute format('create role %I nologin noinherit', r);
            exception when duplicate_object or unique_violation then
                null;
            end;
        end if;
    end loop;
    -- The API reads as `authenticated` (SET LOCAL ROLE), which needs membership.
    if not pg_has_role(current_user, 'authenticated', 'MEMBER') then
        begin
            execute format('grant authenticated to %I', current_user);
        exception when insufficient_privilege then
            raise notice 'cannot grant authenticated to %; the API must connect as a member of it', current_user;
        end;
    end if;
end
$$;

create schema if not exists auth;

do $$
begin
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        -- Supabase's definition: the JWT's `sub`, from either claim setting.
        create function auth.uid() returns uuid
        language sql stable
        as $f$
            select nullif(
                coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                ),
                ''
            )::uuid
        $f$;
    end if;
end
$$;

do $$
begin
    grant usage on schema auth to anon, authenticated, service_role;
exception when insufficient_privilege then
    raise notice 'schema auth is not ours to grant on (Supabase manages it)';
end
$$;

-- The namespace ---------------------------------------------------------------------------

create schema if not exists aijobs;
grant usage on schema aijobs to anon, authenticated, service_role;

-- Which migrations made this schema. `aijobs migrate` creates it before applying the first.
create table if not exists aijobs.schema_migrations (
    version     integer primary key,
    name        text not null,
    checksum    text not null,
    applied_at  timestamptz not null default now()
);

-- Values ----------------------------------------------------------------------------------

-- Why a JSON value may not be stored as a payload or result, or null when it may. A
-- payload is read back by every worker that claims it and every reader that lists it, so
-- what Python, JavaScript and the claim statement cannot read must never be stored:
-- at most 65536 bytes as text, nested at most 32 levels below the top object, and every
-- number at most 32 characters as PostgreSQL writes it (1e400 is 401 digits).
create function aijobs.json_problem(p_value jsonb) returns text
language plpgsql immutable parallel safe
as $$
begin
    -- PL/pgSQL rather than SQL: its plans are kept for the session, where a SQL function that
    -- cannot be inlined is planned again at every call. No SET search_path (that costs every
    -- call too): the calls are qualified with pg_catalog instead.
    if p_value is null then
        return 'is required';
    elsif pg_catalog.jsonb_typeof(p_value) <> 'object' then
        return 'must be a JSON object';
    elsif pg_catalog.octet_length(p_value::text) > 65536 then
        return 'is ' || pg_catalog.octet_length(p_value::text) || ' bytes as JSON; the limit is 65536';
    elsif pg_catalog.jsonb_path_exists(p_value, 'strict $.**{33 to last}') then
        return 'nests deeper than 32 levels';
    -- The numbers as one JSON array's text, "[1, 2.5, ...]": a number longer than 32
    -- characters is a run of 33 characters none of which is a bracket, a comma or a space.
    -- An expression, not a query over the numbers: a query costs a plan's start at every call.
    elsif pg_catalog.jsonb_path_query_array(p_value, 'strict $.** ? (@.type() == "number")')::text
          operator(pg_catalog.~) '[^], []{33}' then
        return 'holds a number longer than 32 characters';
    end if;
    return null;
end
$$;

-- NULL passes a domain's check; the columns say whether they may be null.
create domain aijobs.job_payload as jsonb check (value is null or aijobs.json_problem(value) is null);
create domain aijobs.job_result as jsonb check (value is null or aijobs.json_problem(value) is null);
create domain aijobs.job_priority as smallint check (value between -100 and 100);
create domain aijobs.job_attempt_count as integer check (value >= 0);
create domain aijobs.job_max_attempts as integer check (value between 1 and 100);
-- Printable ASCII: it travels in an HTTP header.
create domain aijobs.job_idempotency_key as text check (value ~ '^[ -~]{1,255}$');
create domain aijobs.job_wait_seconds as real check (value >= 0 and value < 'infinity');
-- Every stored time: finite, and within what Python's datetime (year 9999, in any time zone)
-- and JavaScript's Date can hold. An infinite run_at made `now() - run_at` fail the claim for
-- every worker, and a time Python cannot hold fails every reader that loads its row.
create domain aijobs.instant as timestamptz
    check (value >= '1970-01-01 00:00:00+00' and value < '9999-01-01 00:00:00+00');
-- Domains rather than table CHECKs where one column is checked on a hot path: PostgreSQL
-- reads a table's CHECK constraints from their stored text at every statement that writes
-- the table, where a domain's check is kept ready (a creation writes an account and a tenant).
create domain aijobs.credit_balance as bigint check (value >= 0);
create domain aijobs.tenant_weight as integer check (value between 1 and 1000);
create domain aijobs.running_limit as integer check (value > 0);

create type aijobs.job_status as enum ('pending', 'processing', 'completed', 'failed', 'cancelled');

-- Time-ordered ids (the UUIDv7 layout): new jobs land at the right edge of the primary key,
-- and jobs claimed together sit on nearby pages.
create function aijobs.uuid_v7() returns uuid
language sql volatile parallel safe
as $$
    -- 48 bits of Unix milliseconds, then version 7 and variant bits over random ones.
    select encode(
        set_bit(
            set_bit(
                overlay(uuid_send(gen_random_uuid())
                        placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint)
                                          from 3)
                        from 1 for 6),
                52, 1),
            53, 1),
        'hex')::uuid
$$;

-- Deployment settings -----------------------------------------------------------------------

-- One row, written by `aijobs migrate` from the deployment's configuration. The creation
-- function reads its limits here, so no caller can pass a limit of its own.
create table aijobs.settings (
    singleton                    boolean primary key default true check (singleton),
    max_jobs_in_flight_per_user  integer check (max_jobs_in_flight_per_user > 0),
    updated_at                   aijobs.instant not null default now(),
    -- The most jobs of one tenant running at once, unless the tenant has a limit of its own
    -- (`tenants.max_running`); null: no limit.
    max_running_per_tenant       integer check (max_running_per_tenant > 0),
    -- Where a user's own call (a Supabase RPC) finds its tenant: a dot-separated path into its
    -- JWT's claims (`org_id`, `app_metadata.org_id`); null: the tenant is the user.
    tenant_claim                 text check (
        tenant_claim ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$')
);
insert into aijobs.settings (max_jobs_in_flight_per_user) values (100);

-- Accounts and credits ----------------------------------------------------------------------

-- Invariant: balance = sum(credit_ledger.amount) of the account, and >= 0.
create table aijobs.accounts (
    user_id     uuid primary key,
    balance     aijobs.credit_balance not null default 0,
    created_at  aijobs.instant not null default now(),
    updated_at  aijobs.instant not null default now()
);

-- Debit at creation, refund at final failure or cancellation: each at most once per job.
-- No foreign key to jobs: the ledger outlives pruned job history.
create table aijobs.credit_ledger (
    id          bigint generated always as identity primary key,
    user_id     uuid not null references aijobs.accounts (user_id),
    job_id      uuid,
    kind        text not null,
    amount      bigint not null,
    note        text,
    created_at  aijobs.instant not null default now(),
    -- Each branch names one kind, so a fourth kind fails it.
    constraint credit_ledger_sign check (
        (kind = 'debit' and amount <= 0 and job_id is not null)
        or (kind = 'refund' and amount >= 0 and job_id is not null)
        or (kind = 'grant' and job_id is null)
    )
);
create unique index credit_ledger_once_per_job on aijobs.credit_ledger (job_id, kind) where job_id is not null;
create index credit_ledger_user_idx on aijobs.credit_ledger (user_id, id desc);

create function aijobs.credit_ledger_append_only() returns trigger
language plpgsql
set search_path = aijobs, pg_temp
as $$
begin
    raise exception 'credit_ledger is append-only (% refused)', tg_op using errcode = 'AJ000';
end
$$;
create trigger credit_ledger_append_only
    before update or delete on aijobs.credit_ledger
    for each row execute function aijobs.credit_ledger_append_only();

-- Grants made with a key (a payment provider's event id, say): one key grants once to its
-- user, so a payment webhook delivered twice does not pay twice. Sent again, the grant answers
-- the balance it left; with another amount or note, it is refused. Kept as long as the ledger.
-- No foreign key to accounts: the ledger row's own holds the user, and one would add a check
-- to every update of an account's balance, every creation's included.
create table aijobs.credit_grant_keys (
    user_id     uuid not null,
    key         aijobs.job_idempotency_key not null,
    ledger_id   bigint not null unique references aijobs.credit_ledger (id),
    amount      bigint not null,
    note        text not null,
    balance     bigint not null,
    created_at  aijobs.instant not null default now(),
    primary key (user_id, key)
);

-- An account's own voice for LLM job types (brand voice, business name, signature, default
-- language and tone), read by the worker for the types that use them and sent to the model
-- as data. Bounded here as the API's model bounds it, so no caller stores more. Written by the
-- API's own role for the user it verified (or an admin); users read their own row.
create table aijobs.account_settings (
    user_id           uuid primary key,
    brand_voice       text check (char_length(brand_voice) between 1 and 2000),
    business_name     text check (char_length(business_name) between 1 and 200),
    signature         text check (char_length(signature) between 1 and 300),
    default_language  text check (default_language ~ '^[a-z]{2}$'),
    default_tone      text check (default_tone in ('friendly', 'professional', 'apologetic', 'enthusiastic', 'neutral')),
    updated_at        aijobs.instant not null default now()
);

-- Job types, jobs, attempts -----------------------------------------------------------------

-- Copied from the Python registry by `aijobs migrate`: the creation function reads cost here;
-- `enabled` and `paused` are the deployment's own switches, which the sync leaves alone.
create table aijobs.job_types (
    name             text primary key check (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    cost             integer not null check (cost >= 0),
    timeout_seconds  real not null check (timeout_seconds > 0 and timeout_seconds < 'infinity'),
    enabled          boolean not null default true,
    updated_at       aijobs.instant not null default now(),
    -- A paused type's pending jobs are not claimed (they wait, kept); creations still are
    -- accepted. `enabled` is the other switch: it refuses creations and lets pending jobs run.
    paused           boolean not null default false,
    -- The most jobs of this type one tenant may have running at once, across all workers
    -- (null: no limit of the type's own; the tenant's limit applies in any case).
    max_running_per_tenant  integer check (max_running_per_tenant > 0)
);

-- Every claim takes a fresh token; every write that ends an attempt must present it (fencing).
create sequence aijobs.job_lease_seq;

create table aijobs.jobs (
    id                    uuid primary key default aijobs.uuid_v7(),
    user_id               uuid not null references aijobs.accounts (user_id),
    type                  text not null references aijobs.job_types (name),
    payload               aijobs.job_payload not null,
    status                aijobs.job_status not null default 'pending',
    priority              aijobs.job_priority not null default 0,
    run_at                aijobs.instant not null default now(),
    attempts              aijobs.job_attempt_count not null default 0,
    max_attempts          aijobs.job_max_attempts not null default 4,
    result                aijobs.job_result,
    error                 text,
    -- A table CHECK, not a domain: RETURN QUERY refuses a domain where `integer` is declared.
    cost                  integer not null check (cost >= 0),
    idempotency_key       aijobs.job_idempotency_key,
    retry_of              uuid references aijobs.jobs (id) on delete set null,
    -- While an attempt runs, the job row names it; its job_attempts row is written when it ends.
    lease_token           bigint,
    lease_owner           text,
    lease_expires_at      aijobs.instant,
    attempt_started_at    aijobs.instant,
    cancel_requested      boolean not null default false,
    -- Time spent put back for provider rate limits; past the deployment's maximum it fails.
    rate_limited_seconds  aijobs.job_wait_seconds not null default 0,
    created_at            aijobs.instant not null default now(),
    started_at            aijobs.instant,
    finished_at           aijobs.instant,
    updated_at            aijobs.instant not null default now(),
    -- The job's turn in the fair share between tenants (start-time fair queuing): the claim
    -- serves the earliest. Null until the job is due: create_jobs gives a due job its turn, and
    -- the claim gives one to each job that has come due since (created for later, retrying
    -- after a delay, or written directly), so jobs not due yet never sit ahead in the order.
    fair_tag              bigint,
    -- The job's place in its tenant's own order after priority: its first turn, kept when
    -- the claim gives its turn to a job of higher priority (fair_tag changes then).
    tenant_seq            bigint,
    -- Whose turns the job takes in the fair share and whose limit on running jobs holds it:
    -- the user's own id, or the organisation (say) its creation named. The user stays the
    -- owner (credits, the in-flight quota, who may read it).
    tenant                uuid not null,
    constraint jobs_lease_when_processing check (
        status <> 'processing' or (lease_token is not null and lease_expires_at is not null)
    ),
    constraint jobs_finished_when_terminal check (
        (status in ('completed', 'failed', 'cancelled')) = (finished_at is not null)
    ),
    constraint jobs_turn_whole check ((fair_tag is null) = (tenant_seq is null))
);
-- The claim walks this index in fair-share order and stops after LIMIT rows; the tenant index
-- gives each tenant's turns to its own jobs by priority. Jobs without a turn sort last, by
-- run_at: the claim finds those that have come due there, and stops at the first that has not.
create index jobs_fair_claim_idx on aijobs.jobs (fair_tag, run_at, id) where status = 'pending';
create index jobs_tenant_claim_idx on aijobs.jobs (tenant, priority desc, tenant_seq, run_at)
    where status = 'pending';
-- The rescuer finds expired leases without touching finished history.
create index jobs_lease_expiry_idx on aijobs.jobs (lease_expires_at) where status = 'processing';
create index jobs_user_created_idx on aijobs.jobs (user_id, created_at desc, id desc);
-- A limited tenant's running jobs are counted from these entries alone (never its backlog).
create index jobs_tenant_running_idx on aijobs.jobs (tenant) where status = 'processing';
-- The in-flight quota counts exactly these rows.
create index jobs_user_active_idx on aijobs.jobs (user_id) where status in ('pending', 'processing');
create index jobs_retry_of_idx on aijobs.jobs (retry_of) where retry_of is not null;
-- Partial: jobs created without a key add no entry at every update.
create unique index jobs_idempotency_key_idx on aijobs.jobs (user_id, idempotency_key)
    where idempotency_key is not null;
-- Windowed stats and retention read finished jobs by time, from the index alone.
create index jobs_finished_stats_idx on aijobs.jobs (finished_at)
    include (status, type, attempts, started_at, created_at)
    where finished_at is not null;
-- Queue depth reads only the live part of the queue.
create index jobs_active_idx on aijobs.jobs (status, created_at) include (type)
    where status in ('pending', 'processing');
-- "Latest failures" walks this backwards and stops after LIMIT rows.
create index jobs_failed_recent_idx on aijobs.jobs (finished_at desc) where status = 'failed';

-- Fair share between tenants (a tenant is a user, or what its creation named as
-- `jobs.tenant`, such as an organisation): its weight, and the tag after its last
-- job's turn. Written by create_jobs; the weight and the limit by the owner or service_role.
create table aijobs.tenants (
    tenant       uuid primary key,
    weight       aijobs.tenant_weight not null default 1,
    last_tag     bigint not null default 0,
    updated_at   aijobs.instant not null default now(),
    -- The most of its jobs running at once, instead of the deployment's default
    -- (`settings.max_running_per_tenant`); null: the default.
    max_running  aijobs.running_limit
);
-- When the queue is empty, a creation starts from the latest turn handed out.
create index tenants_last_tag_idx on aijobs.tenants (last_tag);
-- The claim asks whether any tenant has a limit of its own without reading every tenant.
create index tenants_max_running_idx on aijobs.tenants (tenant) where max_running is not null;

-- One row per tenant whose claims have been limited: claims of a limited tenant lock its row
-- here, so they follow one another and each counts the running jobs of those before it. A
-- table of its own, not `tenants`: create_jobs holds a tenant's row there for its whole
-- transaction (a 10,000-job import), and the claims must not wait on that.
create table aijobs.tenant_claims (
    tenant  uuid primary key
);

-- One row per attempt, written when it ends, keyed by the lease token so a late writer can
-- only touch its own. No foreign key to jobs: the check locked the job row at every finish;
-- retention deletes attempts with their job.
create table aijobs.job_attempts (
    lease_token       bigint primary key,
    job_id            uuid not null,
    attempt           integer not null,
    worker_id         text not null,
    started_at        aijobs.instant not null default now(),
    finished_at       aijobs.instant,
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
create index job_attempts_job_idx on aijobs.job_attempts (job_id);
create index job_attempts_stats_idx on aijobs.job_attempts (finished_at)
    include (outcome, provider, model, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd)
    where finished_at is not null;

create table aijobs.workers (
    id                 text primary key,
    host               text not null,
    pid                integer not null,
    version            text not null,
    concurrency        integer not null,
    started_at         aijobs.instant not null default now(),
    last_heartbeat_at  aijobs.instant not null default now(),
    stopped_at         aijobs.instant,
    in_flight          integer not null default 0
);
create index workers_heartbeat_idx on aijobs.workers (last_heartbeat_at);

-- Providers ---------------------------------------------------------------------------------

-- Rate limits and pauses shared by every worker on any machine. `hold_until` is set when the
-- provider answers 429 (or the shared budget runs out): until then no worker calls it.
create table aijobs.provider_limits (
    provider     text primary key,
    hold_until   aijobs.instant,
    hold_reason  text,
    holds        bigint not null default 0,
    updated_at   aijobs.instant not null default now(),
    -- Since when, and why, no worker calls this provider (null: not paused): a wrong key, an
    -- unknown model or a base URL where nothing answers. Lifted by a probe call that is answered.
    paused_since   aijobs.instant,
    paused_reason  text,
    -- When the next probe may be sent; claimed by moving it on, so one worker probes at a time.
    probe_after    aijobs.instant,
    constraint provider_limits_pause_check
        check ((paused_since is null) = (paused_reason is null) and (paused_since is null) = (probe_after is null))
);

-- A sliding log of recent calls for the optional RPM / TPM budgets.
create table aijobs.provider_calls (
    id        bigint generated always as identity primary key,
    provider  text not null references aijobs.provider_limits (provider) on delete cascade,
    at        aijobs.instant not null default clock_timestamp(),
    tokens    integer not null default 0 check (tokens >= 0)
);
create index provider_calls_window_idx on aijobs.provider_calls (provider, at);

-- The HTTP API and monitoring ---------------------------------------------------------------

-- The Idempotency-Key store (Stripe's semantics), written only by the API's own role in the
-- transaction of the job it describes; kept at least 24 hours.
create table aijobs.api_idempotency_keys (
    user_id          uuid not null,
    key              text not null check (length(key) between 1 and 255),
    request_hash     text not null,
    response_status  integer check (response_status between 100 and 599),
    response_body    jsonb,
    job_id           uuid,
    created_at       aijobs.instant not null default now(),
    primary key (user_id, key)
);
create index api_idempotency_keys_created_idx on aijobs.api_idempotency_keys (created_at);

-- Queue depth cannot be reconstructed for the past, so the maintenance leader samples it.
create table aijobs.queue_samples (
    sampled_at              aijobs.instant not null default now(),
    pending                 integer not null,
    processing              integer not null,
    oldest_pending_seconds  real
);
create index queue_samples_at_idx on aijobs.queue_samples (sampled_at);

-- One row per maintenance role; anyone may take it after `expires_at` (database clock).
create table aijobs.maintenance_leader (
    name         text primary key,
    holder       text not null,
    acquired_at  aijobs.instant not null default now(),
    renewed_at   aijobs.instant not null default now(),
    expires_at   aijobs.instant not null
);

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

-- Who may act for whom ----------------------------------------------------------------------

-- Whether the role calling in may act for any user: a member of `service_role` or of the
-- role that owns aijobs (the role that migrates, which the worker, CLI and API use). Decided
-- by membership: a custom role that merely inherits `authenticated` acts only for itself.
-- Called only from SECURITY DEFINER functions (and executable by the owner alone), where
-- current_user is that owner: so the caller is read from the `role` setting (SET ROLE, as
-- PostgREST and the API use), else the session's user, and compared with current_user (a
-- query of the schema's owner would cost a plan's start at every call).
create function aijobs.caller_is_trusted() returns boolean
language plpgsql stable
as $$
declare
    v_caller name := coalesce(
        nullif(nullif(pg_catalog.current_setting('role', true), 'none'), ''), session_user::text);
begin
    -- Called only from functions that pin search_path; calls are qualified all the same.
    return pg_catalog.pg_has_role(v_caller, 'service_role', 'MEMBER')
        or pg_catalog.pg_has_role(v_caller, current_user, 'MEMBER');
end
$$;

-- The user a call acts for: a trusted caller names one; anyone else acts for their own JWT
-- subject and may not name another.
create function aijobs.acting_user(p_user_id uuid, p_trusted boolean) returns uuid
language plpgsql stable
set search_path = aijobs, pg_temp
as $$
declare
    v_uid uuid;
begin
    if p_trusted then
        if p_user_id is null then
            raise exception 'user_id is required' using errcode = 'AJ005',
                detail = json_build_object('field', 'user_id', 'reason', 'is required')::text;
        end if;
        return p_user_id;
    end if;
    begin
        v_uid := auth.uid();
    exception when invalid_text_representation then
        v_uid := null;
    end;
    if v_uid is null then
        raise exception 'not authenticated' using errcode = 'AJ004';
    end if;
    if p_user_id is not null and p_user_id <> v_uid then
        raise exception 'cannot act for another user' using errcode = 'AJ004';
    end if;
    return v_uid;
end
$$;

-- The tenant a user's own call creates for (a trusted caller names it instead): the value at
-- `settings.tenant_claim` in its JWT's claims (a uuid, like `sub`) when that is set and the
-- claim present, else the user. It may not choose another, as it may not act for another user.
create function aijobs.acting_tenant(p_tenant uuid, p_user uuid) returns uuid
language plpgsql stable
set search_path = aijobs, pg_temp
as $$
declare
    v_path    text;
    v_claims  jsonb;
    v_value   text;
    v_tenant  uuid := p_user;
begin
    select s.tenant_claim into v_path from settings s;
    if v_path is not null then
        begin
            v_claims := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
        exception when invalid_text_representation then
            raise exception 'the JWT claims are not JSON, so the tenant (claim %) cannot be read', v_path
                using errcode = 'AJ005',
                      detail = json_build_object(
                          'field', 'tenant', 'reason', 'the JWT claims are not JSON (claim ' || v_path || ')')::text;
        end;
        v_value := v_claims #>> string_to_array(v_path, '.');
        if v_value is not null then
            -- Only the canonical spelling, as the API accepts it: PostgreSQL reads more forms.
            if v_value !~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' then
                raise exception 'the JWT claim % (the tenant) must be a uuid', v_path using errcode = 'AJ005',
                    detail = json_build_object(
                        'field', 'tenant', 'reason', 'the JWT claim ' || v_path || ' must be a uuid')::text;
            end if;
            v_tenant := v_value::uuid;
        end if;
    end if;
    if p_tenant is not null and p_tenant <> v_tenant then
        raise exception 'cannot choose a tenant' using errcode = 'AJ004';
    end if;
    return v_tenant;
end
$$;

-- Creating jobs: the one way ----------------------------------------------------------------

-- Why element values may not be stored as a job, as {field, reason}, or null when they may:
-- the rules the table's domains hold, named as the API names them. `p_known`/`p_enabled`
-- say what aijobs.job_types holds for the element's type.
create function aijobs.job_problem(
    p_known         boolean,
    p_enabled       boolean,
    p_payload       jsonb,
    p_priority      smallint,
    p_run_at        timestamptz,
    p_max_attempts  integer,
    p_key           text
) returns text[]
language plpgsql immutable parallel safe
as $$
declare
    v_problem text;
begin
    -- Qualified with pg_catalog instead of a SET search_path, which would cost every call.
    if not p_known then
        return array['type', 'is not a known job type'];
    elsif not p_enabled then
        return array['disabled', 'is disabled in this deployment'];
    end if;
    v_problem := aijobs.json_problem(p_payload);
    if v_problem is not null then
        return array['payload', v_problem];
    elsif p_priority not between -100 and 100 then
        return array['priority', 'must be between -100 and 100'];
    elsif not (p_run_at >= '1970-01-01 00:00:00+00' and p_run_at < '9999-01-01 00:00:00+00') then
        return array['run_at', 'must be a finite time from 1970 to 9998'];
    elsif p_max_attempts not between 1 and 100 then
        return array['max_attempts', 'must be between 1 and 100'];
    elsif p_key !~ '^[ -~]{1,255}$' then
        return array['idempotency_key', 'must be 1-255 printable ASCII characters'];
    end if;
    return null;
end
$$;

-- The next `p_n` turns of a tenant in the fair share (start-time fair queuing): the first
-- tag and the step between them. A tenant goes on from where it left off or, if it fell
-- behind or was idle, from the turn the queue is serving now (its earliest turn still due;
-- when none is, the latest turn handed out), so idle time earns no credit and a backlog earns
-- no head start. Locks the tenant's row until the transaction ends: the turns of one tenant
-- are handed out one caller at a time.
create function aijobs.take_turns(p_tenant uuid, p_n integer, out first_tag bigint, out step bigint)
language plpgsql
as $$
declare
    v_clock bigint;
begin
    if p_tenant is null then
        raise exception 'tenant is required' using errcode = 'AJ005',
            detail = pg_catalog.json_build_object('field', 'tenant', 'reason', 'is required')::text;
    elsif p_n is null or p_n not between 1 and 10000 then
        raise exception 'n must be between 1 and 10000' using errcode = 'AJ005',
            detail = pg_catalog.json_build_object('field', 'n', 'reason', 'must be between 1 and 10000')::text;
    end if;
    -- No SET search_path (a cost at every call): called from functions that pin it, and
    -- every name is qualified all the same.
    select j.fair_tag into v_clock from aijobs.jobs j
    where j.status = 'pending' and j.fair_tag is not null and j.run_at <= now()
    order by j.fair_tag, j.run_at, j.id limit 1;
    if v_clock is null then
        select max(t.last_tag) into v_clock from aijobs.tenants t;
    end if;
    -- An update first: the tenant's row exists but for its first turn, and an
    -- INSERT ... ON CONFLICT costs more than an UPDATE when it does.
    update aijobs.tenants t
        set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + p_n::bigint * (1000000 / t.weight),
            updated_at = now()
    where t.tenant = p_tenant
    returning t.last_tag, 1000000 / t.weight into first_tag, step;
    if not found then
        insert into aijobs.tenants as t (tenant, last_tag)
        values (p_tenant, coalesce(v_clock, 0) + p_n::bigint * 1000000)
        on conflict (tenant) do update
            set last_tag = greatest(t.last_tag, coalesce(v_clock, 0)) + p_n::bigint * (1000000 / t.weight),
                updated_at = now()
        returning t.last_tag, 1000000 / t.weight into first_tag, step;
    end if;
    first_tag := first_tag - p_n * step;
end
$$;

-- Create jobs for one user, charged all or nothing: a single job is a batch of one. Element
-- i of every array is job i; null arrays (or elements) take the defaults. Rows come back in
-- input order; `created` is false for an element whose idempotency key already named a job
-- of this user (that job is returned and nothing is charged for it).
--
-- Every element is checked before anything is written (AJ005 naming `jobs[i].<field>`), the
-- user's account row is locked (concurrent creations for one user serialise here, so the
-- balance and the quota cannot be raced), then the quota (AJ006), retry_of (a job of this
-- user), and the balance for the sum (AJ003). Users' own calls are always held to the
-- deployment's in-flight quota; a trusted caller (the API acting for a user) asks for it
-- with p_quota.
--
-- The jobs take their tenant's turns and count against its limit on running jobs: a trusted
-- caller's p_tenant (the API reads it from the verified token), else the user; a user's own
-- call gets its tenant from its JWT (aijobs.acting_tenant) and may not choose another.
create function aijobs.create_jobs(
    p_user_id           uuid,
    p_types             text[],
    p_payloads          jsonb[],
    p_priorities        smallint[] default null,
    p_run_ats           timestamptz[] default null,
    p_max_attempts      integer[] default null,
    p_idempotency_keys  text[] default null,
    p_retry_ofs         uuid[] default null,
    p_quota             boolean default false,
    p_tenant            uuid default null
)
returns table (
    id uuid, status aijobs.job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz
)
language plpgsql
security definer
set search_path = aijobs, pg_temp
-- With array arguments the planner kept choosing custom plans, so every call planned its
-- statements again; the generic plans are right for any batch size.
set plan_cache_mode = force_generic_plan
as $$
declare
    v_trusted  boolean := aijobs.caller_is_trusted();
    -- The trusted cases inline: the API's creations pay for no call and no settings read.
    v_user     uuid := case when v_trusted and p_user_id is not null then p_user_id
                            else aijobs.acting_user(p_user_id, v_trusted) end;
    v_tenant   uuid := case when v_trusted then coalesce(p_tenant, v_user)
                            else aijobs.acting_tenant(p_tenant, v_user) end;
    v_n        integer := coalesce(cardinality(p_types), 0);
    -- A batch of one, the common call, takes scalar statements: the set-shaped ones below
    -- cost about twice as much for a single row.
    v_one      boolean := v_n = 1;
    v_bad_i    integer;
    v_first    integer;
    v_problem  text[];
    v_cost     integer;
    v_enabled  boolean;
    v_existing uuid;
    v_job      record;
    v_balance  bigint;
    v_limit    integer;
    v_new      integer;
    v_due      integer;
    v_total    bigint;
    v_active   bigint;
    v_step     bigint;
    v_tag      bigint;
begin
    if v_n = 0 or v_n > 10000 then
        raise exception 'a creation takes 1 to 10000 jobs, not %', v_n using errcode = 'AJ005',
            detail = json_build_object('field', 'jobs', 'reason', 'must hold 1 to 10000 jobs')::text;
    end if;
    if coalesce(cardinality(p_payloads), -1) <> v_n
       or coalesce(cardinality(p_priorities), v_n) <> v_n
       or coalesce(cardinality(p_run_ats), v_n) <> v_n
       or coalesce(cardinality(p_max_attempts), v_n) <> v_n
       or coalesce(cardinality(p_idempotency_keys), v_n) <> v_n
       or coalesce(cardinality(p_retry_ofs), v_n) <> v_n then
        raise exception 'every array needs one element per job (%)', v_n using errcode = 'AJ005',
            detail = json_build_object('field', 'jobs', 'reason', 'every array needs one element per job')::text;
    end if;

    -- The first element with a value the table would refuse, named as the API names it.
    if v_one then
        select k.cost, k.enabled into v_cost, v_enabled from aijobs.job_types k where k.name = p_types[1];
        v_problem := aijobs.job_problem(found, v_enabled, p_payloads[1], p_priorities[1], p_run_ats[1],
                                        p_max_attempts[1], p_idempotency_keys[1]);
        if v_problem is not null then
            v_bad_i := 1;
        end if;
    else
        select t.i, p.problem into v_bad_i, v_problem
        from unnest(p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts, p_idempotency_keys)
             with ordinality as t(type, payload, priority, run_at, max_attempts, key, i)
        left join aijobs.job_types k on k.name = t.type
        cross join lateral (
            select aijobs.job_problem(k.name is not null, k.enabled, t.payload, t.priority, t.run_at,
                                      t.max_attempts, t.key) as problem
        ) p
        where p.problem is not null
        order by t.i
        limit 1;
    end if;
    if v_bad_i is not null then
        if v_problem[1] = 'type' then
            raise exception 'unknown job type: %', p_types[v_bad_i] using errcode = 'AJ001',
                detail = json_build_object('type', p_types[v_bad_i], 'index', v_bad_i - 1)::text;
        end if;
        if v_problem[1] = 'disabled' then
            raise exception 'job type % is disabled in this deployment', p_types[v_bad_i] using errcode = 'AJ007',
                detail = json_build_object('type', p_types[v_bad_i], 'index', v_bad_i - 1)::text;
        end if;
        raise exception 'jobs[%].%: %', v_bad_i - 1, v_problem[1], v_problem[2] using errcode = 'AJ005',
            detail = json_build_object(
                'field', 'jobs[' || (v_bad_i - 1) || '].' || v_problem[1], 'reason', v_problem[2],
                'index', v_bad_i - 1)::text;
    end if;
    if not v_one and p_idempotency_keys is not null then
        select d.i, d.first into v_bad_i, v_first
        from (select t.i, min(t.i) over (partition by t.key) as first
              from unnest(p_idempotency_keys) with ordinality as t(key, i) where t.key is not null) d
        where d.i > d.first
        order by d.i
        limit 1;
        if v_bad_i is not null then
            raise exception 'jobs[%].idempotency_key repeats the key of jobs[%]', v_bad_i - 1, v_first - 1
                using errcode = 'AJ005',
                      detail = json_build_object(
                          'field', 'jobs[' || (v_bad_i - 1) || '].idempotency_key',
                          'reason', 'repeats the key of jobs[' || (v_first - 1) || ']', 'index', v_bad_i - 1)::text;
        end if;
    end if;

    select a.balance into v_balance from aijobs.accounts a where a.user_id = v_user for update;
    if not found then
        raise exception 'unknown user: %', v_user using errcode = 'AJ002',
            detail = json_build_object('user_id', v_user)::text;
    end if;

    -- What the new jobs cost together; an element whose key already names a job of this
    -- user is answered with that job and costs nothing.
    if v_one then
        if p_idempotency_keys[1] is not null then
            select e.id into v_existing from aijobs.jobs e
            where e.user_id = v_user and e.idempotency_key = p_idempotency_keys[1];
        end if;
        v_new := case when v_existing is null then 1 else 0 end;
        v_due := case when coalesce(p_run_ats[1] <= now(), true) then v_new else 0 end;
        v_total := v_new * v_cost;
    else
        select count(*), count(*) filter (where coalesce(t.run_at <= now(), true)), coalesce(sum(k.cost), 0)
        into v_new, v_due, v_total
        from unnest(p_types, p_idempotency_keys, p_run_ats) as t(type, key, run_at)
        join aijobs.job_types k on k.name = t.type
        where t.key is null
           or not exists (select from aijobs.jobs e where e.user_id = v_user and e.idempotency_key = t.key);
    end if;

    if v_new > 0 and (p_quota or not v_trusted) then
        select s.max_jobs_in_flight_per_user into v_limit from aijobs.settings s;
        if v_limit is not null then
            select count(*) into v_active from aijobs.jobs j
            where j.user_id = v_user and j.status in ('pending', 'processing');
            if v_active + v_new > v_limit then
                raise exception '% of your jobs are pending or processing and % more would pass the limit of %',
                        v_active, v_new, v_limit
                    using errcode = 'AJ006',
                          detail = json_build_object('in_flight', v_active, 'limit', v_limit)::text;
            end if;
        end if;
    end if;

    -- The same refusal whether the id is absent or another user's, so it does not tell which.
    if p_retry_ofs is not null and (not v_one or p_retry_ofs[1] is not null) then
        if v_one then
            select 1 into v_bad_i
            where p_retry_ofs[1] is not null and v_new = 1
              and not exists (select from aijobs.jobs r where r.id = p_retry_ofs[1] and r.user_id = v_user);
        else
            select t.i into v_bad_i
            from unnest(p_retry_ofs, p_idempotency_keys) with ordinality as t(retry_of, key, i)
            where t.retry_of is not null
              and not exists (select from aijobs.jobs r where r.id = t.retry_of and r.user_id = v_user)
              and (t.key is null
                   or not exists (select from aijobs.jobs e where e.user_id = v_user and e.idempotency_key = t.key))
            order by t.i limit 1;
        end if;
        if found then
            raise exception 'jobs[%].retry_of must name one of your jobs', v_bad_i - 1 using errcode = 'AJ005',
                detail = json_build_object(
                    'field', 'jobs[' || (v_bad_i - 1) || '].retry_of', 'reason', 'must name one of your jobs',
                    'index', v_bad_i - 1)::text;
        end if;
    end if;

    if v_balance < v_total then
        raise exception 'insufficient credits: balance %, cost %', v_balance, v_total using errcode = 'AJ003',
            detail = json_build_object('balance', v_balance, 'cost', v_total)::text;
    end if;

    if v_new > 0 then
        update aijobs.accounts a set balance = a.balance - v_total, updated_at = now()
        where a.user_id = v_user
        returning a.balance into v_balance;
    end if;
    -- The due ones take the tenant's next turns; one for later takes its turn when it is due.
    if v_due > 0 then
        select t.first_tag, t.step into v_tag, v_step from aijobs.take_turns(v_tenant, v_due) t;
    end if;

    if v_one then
        if v_new = 0 then
            return query select e.id, e.status, e.cost, v_balance, false, e.created_at::timestamptz,
                                e.run_at::timestamptz
                         from aijobs.jobs e where e.id = v_existing;
            return;
        end if;
        insert into aijobs.jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost,
                                 idempotency_key, retry_of, fair_tag, tenant_seq, tenant)
        values (aijobs.uuid_v7(), v_user, p_types[1], p_payloads[1], coalesce(p_priorities[1], 0),
                coalesce(p_run_ats[1], now()), coalesce(p_max_attempts[1], 4), v_cost,
                p_idempotency_keys[1], p_retry_ofs[1], v_tag, v_tag, v_tenant)
        returning aijobs.jobs.id, aijobs.jobs.status, aijobs.jobs.created_at, aijobs.jobs.run_at into v_job;
        insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)
        values (v_user, v_job.id, 'debit', -v_cost, p_types[1]);
        -- Wake workers. Only the type travels: never payload text.
        perform pg_notify('aijobs_jobs', p_types[1]);
        return query select v_job.id, v_job.status, v_cost, v_balance, true, v_job.created_at::timestamptz,
                            v_job.run_at::timestamptz;
        return;
    end if;

    -- Ids are made first, so each new job is answered at its input position.
    return query
    with input as materialized (
        select t.i, t.type, t.payload, t.priority, t.run_at, t.max_attempts, t.key, t.retry_of, k.cost,
               (select e.id from aijobs.jobs e where t.key is not null
                   and e.user_id = v_user and e.idempotency_key = t.key) as existing
        from unnest(p_types, p_payloads, p_priorities, p_run_ats, p_max_attempts, p_idempotency_keys,
                    p_retry_ofs)
             with ordinality as t(type, payload, priority, run_at, max_attempts, key, retry_of, i)
        join aijobs.job_types k on k.name = t.type
    ), fresh as materialized (
        select aijobs.uuid_v7() as id,
               case when coalesce(input.run_at <= now(), true)
                    then row_number() over (partition by coalesce(input.run_at <= now(), true) order by input.i) - 1
               end as turn,
               input.*
        from input where input.existing is null
    ), inserted as (
        insert into aijobs.jobs (id, user_id, type, payload, priority, run_at, max_attempts, cost,
                                 idempotency_key, retry_of, fair_tag, tenant_seq, tenant)
        select f.id, v_user, f.type, f.payload, coalesce(f.priority, 0), coalesce(f.run_at, now()),
               coalesce(f.max_attempts, 4), f.cost, f.key, f.retry_of, v_tag + f.turn * v_step,
               v_tag + f.turn * v_step, v_tenant
        from fresh f order by f.i
    ), debited as (
        insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)
        select v_user, f.id, 'debit', -f.cost, f.type from fresh f order by f.i
    )
    -- The new jobs' answer comes from what was inserted, not from the rows read back: the
    -- planner cannot know a batch's size here and joined the two lists by comparing every
    -- row with every other (a batch of 10,000 spent seconds there). The inserts run anyway.
    select r.id, r.status, r.cost, v_balance, r.created, r.created_at, r.run_at
    from (
        select f.id, 'pending'::aijobs.job_status as status, f.cost, true as created, now() as created_at,
               coalesce(f.run_at, now()) as run_at, f.i
        from fresh f
        union all
        select e.id, e.status, e.cost, false, e.created_at::timestamptz, e.run_at::timestamptz, input.i
        from input join aijobs.jobs e on e.id = input.existing
    ) r
    order by r.i;

    if v_new > 0 then
        -- Wake workers once per type. Only the type travels: never payload text.
        perform pg_notify('aijobs_jobs', d.type) from (select distinct unnest(p_types) as type) d;
    end if;
end
$$;

-- Several API requests' creations in one statement and one commit (group commit): element i
-- is request i, made for its own user with the quota, in a subtransaction of its own, so one
-- refusal undoes only its own job and debit and comes back as its row's err_* columns.
-- Element i's tenant is p_tenants[i], else its user. Every account is locked first, in user
-- order, then the creations run in tenant order: so each group, like a lone creation (its
-- account, then its tenant's row), takes every account before any tenant's row, and neither
-- two groups nor a group and a lone creation can deadlock, even where users share a tenant.
-- At most 32 elements: more than 64 subtransactions that wrote would overflow the backend's
-- cache of them and slow every snapshot on the server. Owner only: it acts for anyone.
create function aijobs.create_jobs_grouped(
    p_user_ids      uuid[],
    p_types         text[],
    p_payloads      jsonb[],
    p_priorities    smallint[],
    p_run_ats       timestamptz[],
    p_max_attempts  integer[],
    p_retry_ofs     uuid[],
    p_tenants       uuid[] default null
)
returns table (
    ord integer, id uuid, status aijobs.job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz, err_state text, err_message text, err_detail text
)
language plpgsql
set search_path = aijobs, pg_temp
as $$
declare
    v_i   integer;
    v_job record;
begin
    if coalesce(cardinality(p_user_ids), 0) > 32 then
        raise exception 'at most 32 creations in one group, not %', cardinality(p_user_ids)
            using errcode = 'AJ005';
    end if;
    perform from aijobs.accounts a where a.user_id = any(p_user_ids) order by a.user_id for update;
    for v_i in
        select u.ord from unnest(p_user_ids) with ordinality as u(user_id, ord)
        order by coalesce(p_tenants[u.ord], u.user_id), u.user_id, u.ord
    loop
        ord := v_i;
        err_state := null;
        err_message := null;
        err_detail := null;
        begin
            select * into v_job from aijobs.create_jobs(
                p_user_ids[v_i], array[p_types[v_i]], array[p_payloads[v_i]], array[p_priorities[v_i]],
                array[p_run_ats[v_i]], array[p_max_attempts[v_i]], null, array[p_retry_ofs[v_i]], true,
                p_tenants[v_i]
            );
            id := v_job.id;
            status := v_job.status;
            cost := v_job.cost;
            balance := v_job.balance;
            created := v_job.created;
            created_at := v_job.created_at;
            run_at := v_job.run_at;
        exception when others then
            get stacked diagnostics
                err_state = returned_sqlstate, err_message = message_text, err_detail = pg_exception_detail;
            id := null;
            status := null;
            cost := null;
            balance := null;
            created := null;
            created_at := null;
            run_at := null;
        end;
        return next;
    end loop;
end
$$;

-- Credits, refunds, cancellation, status events ---------------------------------------------

-- Grants are ledger rows too; the account is created on first grant. The answer is the balance
-- the grant left. With `p_key` (1-255 printable ASCII characters, one of the user's grant keys)
-- a repeat grants nothing and answers what the first did; the same key with another amount or
-- note is refused (AJ008).
create function aijobs.grant_credits(
    p_user_id uuid, p_amount bigint, p_note text default 'grant', p_key text default null
)
returns bigint
language plpgsql
set search_path = aijobs, pg_temp
as $$
declare
    v_balance bigint;
    v_ledger  bigint;
    v_first   aijobs.credit_grant_keys;
begin
    if p_user_id is null then
        raise exception 'user_id is required' using errcode = 'AJ005',
            detail = json_build_object('field', 'user_id', 'reason', 'is required')::text;
    end if;
    -- The API's and the CLI's bounds (MAX_CREDIT_GRANT), for service_role's direct calls too.
    if p_amount is null or p_amount <= 0 or p_amount > 1000000000 then
        raise exception 'amount must be from 1 to 1000000000' using errcode = 'AJ005',
            detail = json_build_object('field', 'amount', 'reason', 'must be from 1 to 1000000000')::text;
    elsif p_note is null or length(p_note) not between 1 and 200 then
        raise exception 'note must be 1-200 characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'note', 'reason', 'must be 1-200 characters')::text;
    elsif p_key !~ '^[ -~]{1,255}$' then
        raise exception 'key must be 1-255 printable ASCII characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'key', 'reason', 'must be 1-255 printable ASCII characters')::text;
    end if;
    insert into aijobs.accounts (user_id) values (p_user_id) on conflict (user_id) do nothing;
    -- Grants to one user (and so two deliveries of one key) take turns here.
    perform 1 from aijobs.accounts where user_id = p_user_id for update;
    if p_key is not null then
        select * into v_first from aijobs.credit_grant_keys g where g.user_id = p_user_id and g.key = p_key;
        if found then
            if v_first.amount <> p_amount or v_first.note <> p_note then
                raise exception 'grant key % was used for a grant of % (%)', p_key, v_first.amount, v_first.note
                    using errcode = 'AJ008',
                          detail = json_build_object('field', 'key', 'reason',
                              'was used for another grant (' || v_first.amount || ' credits)')::text;
            end if;
            return v_first.balance;
        end if;
    end if;
    insert into aijobs.credit_ledger (user_id, kind, amount, note) values (p_user_id, 'grant', p_amount, p_note)
    returning id into v_ledger;
    update aijobs.accounts set balance = balance + p_amount, updated_at = now()
    where user_id = p_user_id returning balance into v_balance;
    if p_key is not null then
        insert into aijobs.credit_grant_keys (user_id, key, ledger_id, amount, note, balance)
        values (p_user_id, p_key, v_ledger, p_amount, p_note, v_balance);
    end if;
    return v_balance;
end
$$;

-- A refund follows from a job *becoming* failed or cancelled, wherever that happens (worker,
-- rescuer, cancel, admin); the ledger's unique index makes it at most once.
create function aijobs.refund_on_terminal() returns trigger
language plpgsql
security definer
set search_path = aijobs, pg_temp
as $$
declare
    v_amount bigint;
begin
    if new.cost > 0 then
        insert into aijobs.credit_ledger (user_id, job_id, kind, amount, note)
        values (new.user_id, new.id, 'refund', new.cost, 'job ' || new.status::text)
        on conflict (job_id, kind) where job_id is not null do nothing
        returning amount into v_amount;
        if v_amount is not null then
            update aijobs.accounts set balance = balance + v_amount, updated_at = now()
            where user_id = new.user_id;
        end if;
    end if;
    return null;
end
$$;
create trigger jobs_refund_on_terminal
    after update of status on aijobs.jobs
    for each row
    when (new.status in ('failed', 'cancelled') and old.status is distinct from new.status)
    execute function aijobs.refund_on_terminal();

-- Status changes are announced as "<job id> <status>" (never payload text), for SSE.
create function aijobs.notify_status() returns trigger
language plpgsql
set search_path = aijobs, pg_temp
as $$
begin
    perform pg_notify('aijobs_job_events', new.id::text || ' ' || new.status::text);
    return null;
end
$$;
create trigger jobs_notify_status
    after update of status on aijobs.jobs
    for each row
    when (old.status is distinct from new.status)
    execute function aijobs.notify_status();

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

-- A pending job ends `cancelled` at once (refunded by the trigger); a running one is asked to
-- stop, and its worker sees the flag at its next heartbeat or on NOTIFY. A trusted caller
-- without a user may cancel any job; anyone else only their own. The row is locked first and
-- its status read after the lock: a job moving between pending and processing (a retry, the
-- rescuer, a claim) while the cancel runs is cancelled in the state it ends up in, never missed.
create function aijobs.cancel_job(p_job_id uuid, p_user_id uuid default null)
returns table (id uuid, status aijobs.job_status, cancel_requested boolean)
language plpgsql
security definer
set search_path = aijobs, pg_temp
as $$
declare
    v_trusted   boolean := aijobs.caller_is_trusted();
    v_scope_all boolean := v_trusted and p_user_id is null;
    v_owner     uuid;
    v_status    aijobs.job_status;
begin
    if p_job_id is null then
        raise exception 'job id is required' using errcode = 'AJ005',
            detail = json_build_object('field', 'id', 'reason', 'is required')::text;
    end if;
    if not v_scope_all then
        v_owner := aijobs.acting_user(p_user_id, v_trusted);
    end if;
    select j.status into v_status from aijobs.jobs j
    where j.id = p_job_id and (v_scope_all or j.user_id = v_owner)
    for update;
    if v_status = 'pending' then
        return query
        update aijobs.jobs j set status = 'cancelled', finished_at = now(), updated_at = now(),
                                 error = 'cancelled before it started'
        where j.id = p_job_id
        returning j.id, j.status, j.cancel_requested;
    elsif v_status = 'processing' then
        return query
        update aijobs.jobs j set cancel_requested = true, updated_at = now()
        where j.id = p_job_id
        returning j.id, j.status, j.cancel_requested;
        perform pg_notify('aijobs_cancel', p_job_id::text);
    elsif v_status is not null then
        return query
        select j.id, j.status, j.cancel_requested from aijobs.jobs j where j.id = p_job_id;
    end if;
end
$$;

-- Reserve one call against a provider's budget, or say how long until one frees up. A
-- function: after the row lock is taken the count must be read with a fresh snapshot (one
-- statement's snapshot predates the lock wait and would let two workers take the last slot).
-- Null p_rpm / p_tpm means no limit of that kind. A call bigger than the whole token budget
-- still goes through when the window is empty, or it could never run at all.
create function aijobs.provider_budget_reserve(
    p_provider text, p_rpm integer, p_tpm integer, p_tokens integer, p_window_seconds real
)
returns table (ok boolean, call_id bigint, wait_seconds real)
language plpgsql
set search_path = aijobs, pg_temp
as $$
declare
    v_now     timestamptz;
    v_window  interval;
    v_calls   integer;
    v_tokens  bigint;
    v_oldest  timestamptz;
    v_id      bigint;
begin
    -- The settings' own bounds (OPENAI_RPM, OPENAI_TPM, RATE_LIMIT_WINDOW_SECONDS): a limit of
    -- 0 would answer "wait" forever, and a window that is not a finite time fails the query.
    if p_provider is null or length(p_provider) not between 1 and 200 then
        raise exception 'provider must be 1-200 characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'provider', 'reason', 'must be 1-200 characters')::text;
    elsif p_rpm < 1 then
        raise exception 'rpm must be at least 1 (null: no limit)' using errcode = 'AJ005',
            detail = json_build_object('field', 'rpm', 'reason', 'must be at least 1 (null: no limit)')::text;
    elsif p_tpm < 1 then
        raise exception 'tpm must be at least 1 (null: no limit)' using errcode = 'AJ005',
            detail = json_build_object('field', 'tpm', 'reason', 'must be at least 1 (null: no limit)')::text;
    elsif p_tokens is null or p_tokens < 0 then
        raise exception 'tokens must be 0 or more' using errcode = 'AJ005',
            detail = json_build_object('field', 'tokens', 'reason', 'must be 0 or more')::text;
    elsif p_window_seconds is null or not (p_window_seconds > 0 and p_window_seconds <= 3600) then
        raise exception 'window_seconds must be more than 0 and at most 3600' using errcode = 'AJ005',
            detail = json_build_object(
                'field', 'window_seconds', 'reason', 'must be more than 0 and at most 3600')::text;
    end if;
    v_window := make_interval(secs => p_window_seconds);
    insert into aijobs.provider_limits (provider) values (p_provider) on conflict (provider) do nothing;
    perform 1 from aijobs.provider_limits where provider = p_provider for update;
    v_now := clock_timestamp();
    delete from aijobs.provider_calls where provider = p_provider and at <= v_now - v_window;
    select count(*), coalesce(sum(tokens), 0), min(at) into v_calls, v_tokens, v_oldest
    from aijobs.provider_calls where provider = p_provider;
    if (p_rpm is not null and v_calls >= p_rpm)
       or (p_tpm is not null and v_calls > 0 and v_tokens + p_tokens > p_tpm) then
        -- The oldest call leaving the window frees the next slot.
        return query select false, null::bigint,
            greatest(extract(epoch from (v_oldest + v_window - v_now)), 0.001)::real;
        return;
    end if;
    insert into aijobs.provider_calls (provider, at, tokens) values (p_provider, v_now, p_tokens)
    returning id into v_id;
    return query select true, v_id, 0::real;
end
$$;

-- Tenants' limits and turns -----------------------------------------------------------------

-- How many of the jobs a claim would start for each tenant it may start now: for a tenant with
-- a limit on running jobs (its own, else the deployment's), what the limit leaves, counted
-- after its row of tenant_claims is locked; for any other tenant, all it asked. A function:
-- each statement in it reads with a fresh snapshot, so a claim that waited on the lock counts
-- the jobs the claim before it started (one statement's snapshot predates the wait and would
-- let both take the last place). Locks are taken in tenant order, so claims cannot deadlock.
create function aijobs.claim_room(p_tenants uuid[], p_wanted integer[])
returns table (tenant uuid, n integer)
language plpgsql
rows 10
set search_path = aijobs, pg_temp
as $$
declare
    v_default  integer;
    v_limited  uuid[];
    v_types    boolean;
begin
    select s.max_running_per_tenant into v_default from settings s;
    -- With a type's own limit per tenant, every tenant of the claim is locked: claim_type_room
    -- counts its running jobs of that type under the same lock, later in the claim.
    v_types := exists (select from job_types k where k.max_running_per_tenant is not null);
    select coalesce(array_agg(w.tenant order by w.tenant), '{}') into v_limited
    from unnest(p_tenants) as w(tenant)
    where v_types
       or coalesce((select t.max_running from tenants t where t.tenant = w.tenant), v_default) is not null;
    if cardinality(v_limited) > 0 then
        insert into tenant_claims (tenant) select u from unnest(v_limited) as u order by u
        on conflict on constraint tenant_claims_pkey do nothing;
        perform from tenant_claims c where c.tenant = any(v_limited) order by c.tenant for update;
    end if;
    return query
    select w.tenant,
           case when l.lim is null then w.n
                else greatest(0, least(w.n, l.lim - coalesce(r.running, 0)))::integer end
    from unnest(p_tenants, p_wanted) as w(tenant, n)
    cross join lateral (
        select coalesce((select t.max_running from tenants t where t.tenant = w.tenant), v_default) as lim
    ) l
    left join (
        select j.tenant, count(*) as running from jobs j
        where j.status = 'processing' and j.tenant = any(v_limited)
        group by j.tenant
    ) r on r.tenant = w.tenant;
end
$$;

-- How many of the jobs a claim picked of each (tenant, type) it may start: for a type with its
-- own limit on running jobs per tenant (`job_types.max_running_per_tenant`), what the limit
-- leaves the tenant; for any other type, all. Called by the claim after claim_room, which has
-- locked every tenant of the claim's rows of tenant_claims (so claims of a tenant follow one
-- another); a function, so the count reads a fresh snapshot taken after that lock.
create function aijobs.claim_type_room(p_tenants uuid[], p_types text[], p_wanted integer[])
returns table (tenant uuid, type text, n integer)
language plpgsql
rows 10
set search_path = aijobs, pg_temp
as $$
begin
    return query
    select w.tenant, w.type,
           case when k.max_running_per_tenant is null then w.n
                else greatest(0, least(w.n, k.max_running_per_tenant - coalesce(r.running, 0)))::integer end
    from unnest(p_tenants, p_types, p_wanted) as w(tenant, type, n)
    left join job_types k on k.name = w.type
    left join lateral (
        select count(*) as running from jobs j
        where j.status = 'processing' and j.tenant = w.tenant and j.type = w.type
    ) r on k.max_running_per_tenant is not null;
end
$$;

-- Move one pending job ahead of every other tenant's: its tenant takes the turn before the
-- queue's earliest, and the job is first in its tenant's own order (priority 100, before the
-- tenant's other jobs), due now. What users may not do themselves (their priority orders only
-- their own jobs), so owner and service_role only, checked here as well as by the grant (it
-- runs as its owner). The tenant's limit on running jobs still applies. No row when the job
-- is not pending (or does not exist).
create function aijobs.expedite_job(p_job_id uuid)
returns table (id uuid, fair_tag bigint)
language plpgsql
security definer
set search_path = aijobs, pg_temp
as $$
declare
    v_head    bigint;
    v_seq     bigint;
    v_tenant  uuid;
begin
    if not aijobs.caller_is_trusted() then
        raise exception 'only the service role may move a job ahead of other tenants' using errcode = 'AJ004';
    end if;
    if p_job_id is null then
        raise exception 'job id is required' using errcode = 'AJ005',
            detail = json_build_object('field', 'id', 'reason', 'is required')::text;
    end if;
    select j.tenant into v_tenant from jobs j where j.id = p_job_id and j.status = 'pending' for update;
    if not found then
        return;
    end if;
    select j.fair_tag into v_head from jobs j
    where j.status = 'pending' and j.fair_tag is not null and j.run_at <= now()
    order by j.fair_tag, j.run_at, j.id limit 1;
    select min(j.tenant_seq) into v_seq from jobs j where j.tenant = v_tenant and j.status = 'pending';
    return query
    update jobs j
    -- A job without a turn yet takes the head's; with nothing due to stand before, it keeps
    -- none, and the next claim gives it one (it is due now).
    set fair_tag = least(j.fair_tag, v_head - 1),
        tenant_seq = case when least(j.fair_tag, v_head - 1) is not null
                          then coalesce(least(j.tenant_seq, v_seq - 1), v_head - 1) end,
        priority = 100,
        run_at = least(j.run_at, now()),
        updated_at = now()
    where j.id = p_job_id and j.status = 'pending'
    returning j.id, j.fair_tag;
end
$$;

-- The worker's claim and finish ----------------------------------------------------------

-- Give a turn to each job that has come due without one (created for later, retrying after
-- a delay, or written directly): each tenant's in the order they came due, from its next
-- turns (take_turns). The claim calls this first; at most `p_limit` jobs a call, so a large
-- batch coming due at once is turned over the next claims. Tenants' rows are locked in
-- tenant order, so two claims doing this cannot deadlock.
create function aijobs.turn_due_jobs(p_limit integer)
returns integer
language plpgsql
as $$
declare
    v_group  record;
    v_turn   record;
    v_n      integer := 0;
begin
    if p_limit is null or p_limit not between 1 and 10000 then
        raise exception 'limit must be between 1 and 10000' using errcode = 'AJ005',
            detail = pg_catalog.json_build_object('field', 'limit', 'reason', 'must be between 1 and 10000')::text;
    end if;
    for v_group in
        select d.tenant, array_agg(d.id order by d.run_at, d.id) as ids
        from (select j.id, j.tenant, j.run_at from aijobs.jobs j
              where j.status = 'pending' and j.fair_tag is null and j.run_at <= now()
              order by j.fair_tag, j.run_at, j.id
              limit p_limit
              for update skip locked) d
        group by d.tenant
        order by d.tenant
    loop
        select t.first_tag, t.step into v_turn from aijobs.take_turns(v_group.tenant, cardinality(v_group.ids)) t;
        update aijobs.jobs j
        set fair_tag = v_turn.first_tag + (u.k - 1) * v_turn.step,
            tenant_seq = v_turn.first_tag + (u.k - 1) * v_turn.step
        from unnest(v_group.ids) with ordinality as u(id, k)
        where j.id = u.id;
        v_n := v_n + cardinality(v_group.ids);
    end loop;
    return v_n;
end
$$;

-- Claim up to `limit` runnable jobs for one worker in one statement, fairly between tenants:
-- the turns are the runnable jobs with the earliest fair-share tags (create_jobs gives each
-- tenant's jobs turns spaced by its weight, so tenants with work take turns), and a
-- tenant's turns run that tenant's own best jobs (priority, then creation), so priority orders
-- a tenant's jobs and never moves them ahead of another tenant's. A tenant with a limit on
-- running jobs gets no more turns than its limit leaves (claim_room), and while it is at its
-- limit its jobs are passed over, so it holds back no one. SKIP LOCKED lets many
-- workers claim at once without waiting on each other. The attempt's row is written when it
-- ends; until then the job row names it: lease_token, lease_owner, attempts and
-- attempt_started_at. Jobs of a paused type are passed over: they keep their turns and wait.
--
-- A function, so that its plan is made once per connection (generic, `plan_cache_mode`)
-- instead of at every claim: a custom plan of this statement took longer to make than the
-- claim took to run. It holds through PgBouncer and Supavisor in transaction mode, which
-- forbid the client's own prepared statements. Without JIT: the generic plan cannot know the
-- limit, so its cost grows with the backlog, and compiling at every claim would cost more
-- than the claim. Without sorts where an index gives the order: planned for a tenth of the
-- backlog (what PostgreSQL assumes of an unknown limit), beside a long history it read every
-- pending job and sorted them instead of walking the fair-share index to the limit.
-- Owner and service_role only.
create function aijobs.claim_jobs(p_worker_id text, p_limit integer, p_lease_seconds double precision)
returns table (
    id uuid, type text, payload aijobs.job_payload, attempts aijobs.job_attempt_count,
    max_attempts aijobs.job_max_attempts, lease_token bigint, waited_seconds double precision, cost integer
)
language plpgsql
set plan_cache_mode = force_generic_plan
set jit = off
set enable_sort = off
as $$
#variable_conflict use_column
begin
    if p_worker_id is null or length(p_worker_id) not between 1 and 200 then
        raise exception 'worker_id must be 1-200 characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'worker_id', 'reason', 'must be 1-200 characters')::text;
    elsif p_limit is null or p_limit not between 1 and 10000 then
        raise exception 'limit must be between 1 and 10000' using errcode = 'AJ005',
            detail = json_build_object('field', 'limit', 'reason', 'must be between 1 and 10000')::text;
    elsif p_lease_seconds is null or not (p_lease_seconds > 0 and p_lease_seconds <= 86400) then
        raise exception 'lease_seconds must be more than 0 and at most 86400' using errcode = 'AJ005',
            detail = json_build_object('field', 'lease_seconds',
                                       'reason', 'must be more than 0 and at most 86400')::text;
    end if;
    -- Most claims find no job come due without a turn: one probe of the index, then nothing.
    -- (Ordered, so that it is that index: as an EXISTS it may walk another, job by job.) Here,
    -- not inside turn_due_jobs: the call alone costs a claim about half what the probe saves.
    if (select j.id from aijobs.jobs j
        where j.status = 'pending' and j.fair_tag is null and j.run_at <= now()
        order by j.fair_tag, j.run_at, j.id limit 1) is not null then
        perform aijobs.turn_due_jobs(p_limit);
    end if;
    return query
        with paused as (
            -- Read once per claim (a handful of rows), then an array test per candidate row: nothing
            -- paused costs nothing, and a job_types join per row would add a lookup to every claim.
            -- The test sits in a coalesce (a no-op: neither side is null) for the planner's sake: it
            -- estimates `<> all(array it cannot see)` as ten `<>` tests in a row, expects a tenth of
            -- the pending jobs to pass and would rather sort another index's rows than walk the
            -- fair-share one; a coalesce it estimates at one half.
            select coalesce(array_agg(name), '{}') as types from aijobs.job_types where paused
        ), limits as (
            -- Without any limit (the default) this one settings row and a probe of an empty index
            -- are all the claim reads beyond the jobs: the steps below that need a limit are skipped.
            select s.max_running_per_tenant as per_tenant,
                   s.max_running_per_tenant is not null
                   or exists (select from aijobs.tenants t where t.max_running is not null)
                   or k.any_type_limit as any_limit,
                   k.any_type_limit
            from aijobs.settings s
            cross join (select exists (select from aijobs.job_types x where x.max_running_per_tenant is not null)
                               as any_type_limit) k
        ), full_tenants as (
            -- At their limit by this statement's snapshot: enough to pass their jobs over; claim_room
            -- decides exactly.
            select r.tenant
            from (select j.tenant, count(*) as running from aijobs.jobs j
                  where j.status = 'processing' and (select l.any_limit from limits l)
                  group by j.tenant) r
            where r.running >= coalesce((select t.max_running from aijobs.tenants t where t.tenant = r.tenant),
                                        (select l.per_tenant from limits l))
        ), full_pairs as (
            -- Tenants at a type's own limit on running jobs per tenant, by this snapshot: their
            -- jobs of that type are passed over; claim_type_room decides exactly.
            select j.tenant, j.type
            from aijobs.jobs j join aijobs.job_types k on k.name = j.type
            where j.status = 'processing' and k.max_running_per_tenant is not null
              and (select l.any_type_limit from limits l)
            group by j.tenant, j.type, k.max_running_per_tenant
            having count(*) >= k.max_running_per_tenant
        ), turns as (
            -- Two arms, of which only one runs (each opens with a test of the statement's own, done
            -- once): with nothing paused and no tenant at its limit, the usual case, the fair-share
            -- index alone, without a filter whose selectivity the planner cannot know (with one
            -- tenant or one type in the statistics it took `<> all(...)` to pass nothing and sorted
            -- every pending job); otherwise the same walk, passing those jobs over.
            select * from (
                select id, tenant, fair_tag from aijobs.jobs
                where status = 'pending' and fair_tag is not null and run_at <= now()
                  and (select cardinality(p.types) = 0 from paused p)
                  and not exists (select from full_tenants)
                  and not exists (select from full_pairs)
                order by fair_tag, run_at, id
                limit p_limit
                for update skip locked
            ) plain
            union all
            select * from (
                select id, tenant, fair_tag from aijobs.jobs
                where status = 'pending' and fair_tag is not null and run_at <= now()
                  and not ((select cardinality(p.types) = 0 from paused p) and not exists (select from full_tenants)
                           and not exists (select from full_pairs))
                  and coalesce(type <> all((select types from paused)::text[]), true)
                  and coalesce(tenant <> all(array(select f.tenant from full_tenants f)), true)
                  and not exists (select from full_pairs f where f.tenant = jobs.tenant and f.type = jobs.type)
                order by fair_tag, run_at, id
                limit p_limit
                for update skip locked
            ) passing_over
        ), turn_counts as (
            -- Through arrays, so the planner counts a few tenants rather than its default of 200
            -- groups: its estimate of the whole claim then stays small, and with it the claim's cost
            -- under the threshold where PostgreSQL would compile it (JIT) at every execution.
            select array_agg(g.tenant) as tenants, array_agg(g.n)::integer[] as ns
            from (select tenant, count(*) as n from turns group by tenant) g
        ), tenants as (
            select u.tenant, u.n
            from turn_counts a cross join lateral unnest(a.tenants, a.ns) as u(tenant, n)
            where not coalesce((select l.any_limit from limits l), false)
            union all
            select r.tenant, r.n
            from aijobs.claim_room((select a.tenants from turn_counts a), (select a.ns from turn_counts a)) r
            where coalesce((select l.any_limit from limits l), false)
        ), picked as (
            select b.id, b.tenant, b.fair_tag, b.type, b.priority, b.tenant_seq from tenants t
            cross join lateral (
                select j.id, j.tenant, j.fair_tag, j.type, j.priority, j.tenant_seq from aijobs.jobs j
                where j.tenant = t.tenant and j.status = 'pending' and j.tenant_seq is not null
                  and j.run_at <= now()
                  and coalesce(j.type <> all((select types from paused)::text[]), true)
                  and not exists (select from full_pairs f where f.tenant = j.tenant and f.type = j.type)
                order by j.priority desc, j.tenant_seq, j.run_at
                limit t.n
                for update skip locked
            ) b
        ), kept as (
            -- With a type's own limit per tenant somewhere: what claim_type_room leaves of each
            -- tenant's picks of a limited type, its best first; the rest stay pending. Without,
            -- every pick.
            select p.id, p.tenant, p.fair_tag from picked p
            where not coalesce((select l.any_type_limit from limits l), false)
            union all
            select p.id, p.tenant, p.fair_tag
            from (select p.*, row_number() over (partition by p.tenant, p.type
                                                 order by p.priority desc, p.tenant_seq, p.id) as k
                  from picked p) p
            left join (
                select r.tenant, r.type, r.n
                from (select array_agg(g.tenant) as tenants, array_agg(g.type) as types,
                             array_agg(g.n)::integer[] as ns
                      from (select tenant, type, count(*) as n from picked group by tenant, type) g) a
                cross join lateral aijobs.claim_type_room(a.tenants, a.types, a.ns) r
            ) r on r.tenant = p.tenant and r.type = p.type
            where coalesce((select l.any_type_limit from limits l), false) and (r.n is null or p.k <= r.n)
        ), displaced as (
            -- A turn whose own job stays (one of higher priority ran in its place) takes over that
            -- job's later tag, so the tenant keeps exactly one turn per pending job; tenant_seq
            -- keeps the job's place in its tenant's own order.
            select x.id, y.fair_tag
            from (select t.id, t.tenant, row_number() over (partition by t.tenant order by t.fair_tag, t.id) as r
                  from turns t where not exists (select from kept p where p.id = t.id)) x
            join (select p.tenant, p.fair_tag, row_number() over (partition by p.tenant order by p.fair_tag, p.id) as r
                  from kept p where not exists (select from turns t where t.id = p.id)) y
              on y.tenant = x.tenant and y.r = x.r
        ), moved as (
            update aijobs.jobs j set fair_tag = d.fair_tag
            from displaced d
            where j.id = any(array(select id from displaced)) and j.id = d.id
        ), claimed as (
            update aijobs.jobs j
            set status = 'processing',
                attempts = j.attempts + 1,
                lease_token = nextval('aijobs.job_lease_seq'),
                lease_owner = p_worker_id,
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                attempt_started_at = now(),
                started_at = coalesce(j.started_at, now()),
                updated_at = now()
            -- `= any(array(...))` keeps this a primary-key lookup per claimed row; a join here
            -- lets the planner hash the whole table once history grows.
            where j.id = any(array(select id from kept))
            returning j.id, j.type, j.payload, j.attempts, j.max_attempts, j.lease_token, j.run_at, j.cost,
                      j.fair_tag
        )
        -- The columns of `ClaimedJob`, in its order (rows are built positionally). The time the
        -- job waited is measured here, by the database clock (`now()` is the claim's start).
        select id, type, payload, attempts, max_attempts, lease_token,
               extract(epoch from now() - run_at)::float8 as waited_seconds, cost
        from claimed
        order by fair_tag, id;
end
$$;

-- End many attempts in one statement. Each row names the job, the lease token it claimed
-- with (the fence: a write whose token is no longer current changes nothing), the next
-- status and what to record. `give_back` returns the attempt to the budget (graceful
-- shutdown, rate limits). Refunds follow from the status change (trigger), at most once.
-- A cancel accepted while the attempt was ending wins over every way back to pending
-- (retry, rate limit, hand-back): such a job ends `cancelled` instead, so it neither runs
-- again nor keeps its charge. A completed or failed attempt keeps its own ending.
-- The attempt rows of the writes that won are inserted here, from what the update returns
-- (RETURNING reads the `done` row too: no join of the two lists).
-- Answers each write that won, by job id and lease token (one batch may end two attempts
-- of one job: a stale one, fenced out, and the current one), with the status it wrote,
-- which is not always the status it was given (`cancelled` above): the worker logs and
-- counts what was written.
--
-- A function for the same reasons as claim_jobs. Owner and service_role only.
create function aijobs.finish_attempts(p_worker_id text, p_rows jsonb)
returns table (id uuid, lease_token bigint, status text)
language plpgsql
set plan_cache_mode = force_generic_plan
set jit = off
as $$
#variable_conflict use_column
declare
    v_i        bigint;
    v_problem  text[];
begin
    if p_worker_id is null or length(p_worker_id) not between 1 and 200 then
        raise exception 'worker_id must be 1-200 characters' using errcode = 'AJ005',
            detail = json_build_object('field', 'worker_id', 'reason', 'must be 1-200 characters')::text;
    elsif p_rows is null or jsonb_typeof(p_rows) <> 'array' then
        raise exception 'rows must be a JSON array' using errcode = 'AJ005',
            detail = json_build_object('field', 'rows', 'reason', 'must be a JSON array')::text;
    end if;
    begin
        return query
            with done as (
                select * from jsonb_to_recordset(p_rows::jsonb) as d(
                    id uuid, lease_token bigint, status aijobs.job_status, outcome text, result jsonb, error text,
                    retry_in real, give_back boolean, provider text, model text, request_id text,
                    latency_ms real, input_tokens integer, output_tokens integer, reasoning_tokens integer,
                    cost_usd numeric
                )
            ), finished as (
                update aijobs.jobs j
                -- Every expression here reads the row as it was: j.cancel_requested is the request
                -- this write clears.
                set status = case when d.status = 'pending' and j.cancel_requested then 'cancelled'::aijobs.job_status
                                  else d.status end,
                    result = case when d.status = 'completed' then d.result else j.result end,
                    error = case when d.status = 'pending' and j.cancel_requested
                                 then 'cancelled while running' || coalesce(' (the attempt ended: ' || d.error || ')', '')
                                 else d.error end,
                    attempts = j.attempts - (case when coalesce(d.give_back, false) then 1 else 0 end),
                    run_at = case when d.status = 'pending' and not j.cancel_requested
                                  then now() + make_interval(secs => coalesce(d.retry_in, 0))
                                  else j.run_at end,
                    -- A retry after a delay is not due: it takes a new turn when it is.
                    fair_tag = case when d.status = 'pending' and coalesce(d.retry_in, 0) > 0 then null
                                    else j.fair_tag end,
                    tenant_seq = case when d.status = 'pending' and coalesce(d.retry_in, 0) > 0 then null
                                      else j.tenant_seq end,
                    finished_at = case when d.status in ('completed', 'failed', 'cancelled')
                                         or (d.status = 'pending' and j.cancel_requested) then now() end,
                    lease_owner = null,
                    lease_expires_at = null,
                    cancel_requested = false,
                    updated_at = now()
                from done d
                -- `status::text`: compared as the enum, it matches the predicates of the partial
                -- indexes on processing jobs, and the plan made once for every later call (when few
                -- jobs ran) read all the running jobs instead of these by their key.
                where j.id = any(array(select id from done))
                  and j.id = d.id and j.lease_token = d.lease_token and j.status::text = 'processing'
                returning j.id, j.lease_token, j.status,
                          j.attempts + (case when coalesce(d.give_back, false) then 1 else 0 end) as attempt,
                          j.attempt_started_at, d.outcome, d.error, d.provider, d.model, d.request_id,
                          d.latency_ms, d.input_tokens, d.output_tokens, d.reasoning_tokens, d.cost_usd, j.type,
                          j.tenant
            ), closed as (
                insert into aijobs.job_attempts as a (
                    lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome, error,
                    provider, model, request_id, latency_ms, input_tokens, output_tokens, reasoning_tokens, cost_usd
                )
                select f.lease_token, f.id, f.attempt, p_worker_id, coalesce(f.attempt_started_at, now()), now(),
                       f.outcome, f.error, f.provider, f.model, f.request_id, f.latency_ms, f.input_tokens,
                       f.output_tokens, f.reasoning_tokens, f.cost_usd
                from finished f
            ), superseded as (
                -- A write that lost the race still records what its call cost, on the attempt the
                -- rescuer closed as lost; it never rewrites an attempt that ended otherwise. A hand-back
                -- (shutdown, or a lease it could not renew) carries no call to record: the attempt
                -- stays lost.
                update aijobs.job_attempts a
                set outcome = 'superseded',
                    error = coalesce(d.error, a.error),
                    provider = d.provider, model = d.model, request_id = d.request_id,
                    latency_ms = d.latency_ms, input_tokens = d.input_tokens, output_tokens = d.output_tokens,
                    reasoning_tokens = d.reasoning_tokens, cost_usd = d.cost_usd
                from done d
                where a.lease_token = any(array(
                          select lease_token from done where lease_token not in (select lease_token from finished)))
                  and a.lease_token = d.lease_token
                  and a.outcome = 'lost'
                  and d.outcome <> 'handed_back'
            ), wake as (
                -- A job of a tenant with a limit on running jobs that ends makes room for the tenant's
                -- jobs the claims passed over: if some are due, wake the workers (created jobs wake them
                -- the same way). Never without a limit: the drain of an unlimited queue sends nothing more.
                select pg_notify('aijobs_jobs', t.type)
                from (select distinct g.type
                      from (select f.tenant, min(f.type) as type,
                                   bool_or(exists (select from aijobs.job_types k
                                                   where k.name = f.type and k.max_running_per_tenant is not null))
                                       as type_limited
                            from finished f group by f.tenant) g
                      where (g.type_limited
                             or coalesce((select x.max_running from aijobs.tenants x where x.tenant = g.tenant),
                                         (select s.max_running_per_tenant from aijobs.settings s)) is not null)
                        and exists (select from aijobs.jobs p
                                    where p.tenant = g.tenant and p.status = 'pending' and p.run_at <= now())) t
                where exists (select from aijobs.settings s where s.max_running_per_tenant is not null)
                   or exists (select from aijobs.tenants x where x.max_running is not null)
                   or exists (select from aijobs.job_types k where k.max_running_per_tenant is not null)
            )
            -- `wake` is a plain query, run only if read: the count reads it.
            select id, lease_token, status::text from finished
            where (select count(*) from wake) >= 0;
    exception when data_exception or integrity_constraint_violation then
        -- A value the statement could not store: name the first row and field that caused it,
        -- as the API would (a worker never sends one; a direct caller may). Anything else is
        -- raised as it came.
        select r.i, r.problem into v_i, v_problem
        from jsonb_array_elements(p_rows) with ordinality as e(d, i)
        cross join lateral (select e.i, case
            when jsonb_typeof(e.d) <> 'object' then array['', 'must be a JSON object']
            when e.d->>'id' is null or e.d->>'id' !~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                then array['.id', 'must be a job id (a uuid)']
            when jsonb_typeof(e.d->'lease_token') is distinct from 'number'
                 or e.d->>'lease_token' !~ '^[1-9][0-9]{0,17}$'
                then array['.lease_token', 'must be the claim''s lease token (a positive integer)']
            when e.d->>'status' is null or e.d->>'status' not in ('pending', 'completed', 'failed', 'cancelled')
                then array['.status', 'must be pending, completed, failed or cancelled']
            when e.d->>'outcome' is null or e.d->>'outcome' not in (
                    'completed', 'retry', 'failed', 'cancelled', 'handed_back', 'rate_limited')
                then array['.outcome',
                           'must be completed, retry, failed, cancelled, handed_back or rate_limited']
            when e.d->>'status' = 'completed' and aijobs.json_problem(e.d->'result') is not null
                then array['.result', aijobs.json_problem(e.d->'result')]
            when coalesce(jsonb_typeof(e.d->'error'), 'null') not in ('null', 'string')
                then array['.error', 'must be a string']
            when coalesce(jsonb_typeof(e.d->'retry_in'), 'null') not in ('null', 'number')
                 or (e.d->>'retry_in')::numeric not between 0 and 604800
                then array['.retry_in', 'must be 0 to 604800 seconds']
            when coalesce(jsonb_typeof(e.d->'give_back'), 'null') not in ('null', 'boolean')
                then array['.give_back', 'must be true or false']
            when coalesce(jsonb_typeof(e.d->'provider'), 'null') not in ('null', 'string')
                then array['.provider', 'must be a string']
            when coalesce(jsonb_typeof(e.d->'model'), 'null') not in ('null', 'string')
                then array['.model', 'must be a string']
            when coalesce(jsonb_typeof(e.d->'request_id'), 'null') not in ('null', 'string')
                then array['.request_id', 'must be a string']
            when coalesce(jsonb_typeof(e.d->'latency_ms'), 'null') not in ('null', 'number')
                 or (e.d->>'latency_ms')::numeric not between 0 and 1e9
                then array['.latency_ms', 'must be 0 to 1000000000']
            when coalesce(jsonb_typeof(e.d->'input_tokens'), 'null') not in ('null', 'number')
                 or (e.d->>'input_tokens')::numeric not between 0 and 2147483647
                 or (e.d->>'input_tokens')::numeric % 1 <> 0
                then array['.input_tokens', 'must be a whole number from 0 to 2147483647']
            when coalesce(jsonb_typeof(e.d->'output_tokens'), 'null') not in ('null', 'number')
                 or (e.d->>'output_tokens')::numeric not between 0 and 2147483647
                 or (e.d->>'output_tokens')::numeric % 1 <> 0
                then array['.output_tokens', 'must be a whole number from 0 to 2147483647']
            when coalesce(jsonb_typeof(e.d->'reasoning_tokens'), 'null') not in ('null', 'number')
                 or (e.d->>'reasoning_tokens')::numeric not between 0 and 2147483647
                 or (e.d->>'reasoning_tokens')::numeric % 1 <> 0
                then array['.reasoning_tokens', 'must be a whole number from 0 to 2147483647']
            when coalesce(jsonb_typeof(e.d->'cost_usd'), 'null') not in ('null', 'number')
                 or (e.d->>'cost_usd')::numeric not between 0 and 999999
                then array['.cost_usd', 'must be 0 to 999999']
            end as problem) r
        where r.problem is not null
        order by r.i
        limit 1;
        if v_i is null then
            raise;
        end if;
        raise exception 'rows[%]%: %', v_i - 1, v_problem[1], v_problem[2] using errcode = 'AJ005',
            detail = json_build_object(
                'field', 'rows[' || (v_i - 1) || ']' || v_problem[1], 'reason', v_problem[2],
                'index', v_i - 1)::text;
    end;
end
$$;

-- Row-level security ------------------------------------------------------------------------

-- RLS is the enforcement for reads: a request as `authenticated` sees only its own rows.
-- FORCE subjects the owner too, so the owner and service_role get explicit all-rows policies.
do $$
declare
    t text;
    r text;
begin
    foreach t in array array[
        'settings', 'accounts', 'account_settings', 'credit_ledger', 'credit_grant_keys', 'job_types', 'jobs', 'tenants', 'tenant_claims', 'job_attempts', 'workers',
        'provider_limits', 'provider_calls', 'api_idempotency_keys', 'queue_samples', 'maintenance_leader',
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

create policy accounts_own on aijobs.accounts for select to authenticated using (user_id = auth.uid());
create policy account_settings_own on aijobs.account_settings for select to authenticated
    using (user_id = auth.uid());
create policy credit_ledger_own on aijobs.credit_ledger for select to authenticated using (user_id = auth.uid());
create policy jobs_own on aijobs.jobs for select to authenticated using (user_id = auth.uid());
create policy job_attempts_own on aijobs.job_attempts for select to authenticated
    using (exists (select 1 from aijobs.jobs j where j.id = job_attempts.job_id and j.user_id = auth.uid()));
create policy job_types_read on aijobs.job_types for select to anon, authenticated using (enabled);

-- Privileges --------------------------------------------------------------------------------

-- Exactly what is granted below, whatever default privileges the database adds (Supabase
-- grants everything new to anon, authenticated and service_role by default). The schema is
-- aijobs' alone, so "all in schema" reaches nothing else.
revoke all on all tables in schema aijobs from public, anon, authenticated, service_role;
revoke all on all sequences in schema aijobs from public, anon, authenticated, service_role;
revoke all on all functions in schema aijobs from public, anon, authenticated, service_role;

-- Users read their own rows and create and cancel their own jobs, nothing else.
grant select on aijobs.accounts, aijobs.account_settings, aijobs.credit_ledger, aijobs.jobs,
    aijobs.job_attempts, aijobs.job_types
    to authenticated;
grant select on aijobs.job_types to anon;
grant execute on function
    aijobs.create_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[], text[], uuid[], boolean, uuid),
    aijobs.cancel_job(uuid, uuid)
    to authenticated;

-- Supabase's server-side role uses the tables as the worker and the CLI do.
grant select, insert, update, delete on all tables in schema aijobs to service_role;
grant usage on all sequences in schema aijobs to service_role;
grant execute on function
    aijobs.create_jobs(uuid, text[], jsonb[], smallint[], timestamptz[], integer[], text[], uuid[], boolean, uuid),
    aijobs.cancel_job(uuid, uuid),
    aijobs.grant_credits(uuid, bigint, text, text),
    aijobs.provider_budget_reserve(text, integer, integer, integer, real),
    aijobs.expedite_job(uuid),
    aijobs.claim_jobs(text, integer, double precision),
    aijobs.finish_attempts(text, jsonb),
    aijobs.claim_room(uuid[], integer[]),
    aijobs.claim_type_room(uuid[], text[], integer[]),
    aijobs.take_turns(uuid, integer),
    aijobs.turn_due_jobs(integer)
    to service_role;
-- What service_role's own writes to jobs evaluate (the payload's check, the id's default).
-- The functions granted to users run as their owner and need no more.
grant execute on function aijobs.json_problem(jsonb), aijobs.uuid_v7() to service_role;
