-- Migration 007: four functions hold against what their callers may send and against a
-- race. ../schema.sql shows the result.
--
-- - `cancel_job` locks the job's row before reading its status. It ran an update for a
--   pending job and then one for a running job, each with its own snapshot: a job moving
--   between the two states while the cancel ran (a retry going back to pending, the rescuer
--   taking a job back) matched neither, and the accepted cancel was lost.
-- - `grant_credits` holds service_role's direct calls to the API's bounds: an amount from 1
--   to 1,000,000,000 (it allowed 1,000,000,000,000) and a note of 1-200 characters. It takes
--   a key (`p_key`, new table `credit_grant_keys`): one key grants once to its user, so a
--   payment webhook delivered twice pays once; another amount or note under the key is AJ008.
-- - `provider_budget_reserve` refuses a missing provider, a limit below 1 (which answered
--   "wait" forever), negative tokens and a window that is not more than 0 and at most 3600
--   seconds (which failed with a range error), naming the argument.
-- - `finish_attempts` names the row and the field when a row cannot be stored (AJ005,
--   `rows[i].<field>`), where it failed with the constraint or cast error alone. The check
--   runs only after such a failure, so a worker's finish pays nothing for it.

-- A pending job ends `cancelled` at once (refunded by the trigger); a running one is asked to
-- stop, and its worker sees the flag at its next heartbeat or on NOTIFY. A trusted caller
-- without a user may cancel any job; anyone else only their own. The row is locked first and
-- its status read after the lock: a job moving between pending and processing (a retry, the
-- rescuer, a claim) while the cancel runs is cancelled in the state it ends up in, never missed.
create or replace function aijobs.cancel_job(p_job_id uuid, p_user_id uuid default null)
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
alter table aijobs.credit_grant_keys enable row level security;
alter table aijobs.credit_grant_keys force row level security;
create policy credit_grant_keys_all_service_role on aijobs.credit_grant_keys
    for all to service_role using (true) with check (true);
do $$
begin
    execute format(
        'create policy %I on aijobs.credit_grant_keys for all to %I using (true) with check (true)',
        'credit_grant_keys_all_' || current_user, current_user);
end
$$;
revoke all on aijobs.credit_grant_keys from public, anon, authenticated, service_role;
grant select, insert, update, delete on aijobs.credit_grant_keys to service_role;

-- A new argument (the key), so a new function: the old one goes, with its grant.
drop function aijobs.grant_credits(uuid, bigint, text);
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
revoke all on function aijobs.grant_credits(uuid, bigint, text, text) from public, anon, authenticated, service_role;
grant execute on function aijobs.grant_credits(uuid, bigint, text, text) to service_role;

-- Reserve one call against a provider's budget, or say how long until one frees up. A
-- function: after the row lock is taken the count must be read with a fresh snapshot (one
-- statement's snapshot predates the lock wait and would let two workers take the last slot).
-- Null p_rpm / p_tpm means no limit of that kind. A call bigger than the whole token budget
-- still goes through when the window is empty, or it could never run at all.
create or replace function aijobs.provider_budget_reserve(
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
create or replace function aijobs.finish_attempts(p_worker_id text, p_rows jsonb)
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
