-- Provider rate limits shared by every worker, on any machine: state lives here, not in memory.
--
-- provider_limits: one row per provider. `hold_until` is set when the provider answers 429
--   (or our own budget runs out): until then no worker claims jobs for it or calls it.
-- provider_calls: a sliding log of recent calls, for the optional OPENAI_RPM / OPENAI_TPM
--   budgets. Rows older than the window are deleted by the next reservation.
-- jobs.rate_limited_seconds: how long a job has been put back for rate limits in total; past
--   RATE_LIMIT_MAX_WAIT_SECONDS it fails with a clear error (and the refund trigger runs).

create table provider_limits (
    provider     text primary key,
    hold_until   timestamptz,
    hold_reason  text,
    holds        bigint not null default 0,
    updated_at   timestamptz not null default now()
);

create table provider_calls (
    id        bigint generated always as identity primary key,
    provider  text not null references provider_limits (provider) on delete cascade,
    at        timestamptz not null default clock_timestamp(),
    tokens    integer not null default 0 check (tokens >= 0)
);
create index provider_calls_window_idx on provider_calls (provider, at);

alter table jobs add column rate_limited_seconds real not null default 0
    check (rate_limited_seconds >= 0);

-- Reserve one call against a provider's budget, or say how long until one frees up.
-- A function rather than one statement: after the row lock is taken, the count must be read
-- with a fresh snapshot (a single statement's snapshot predates the lock wait, and would
-- miss calls committed meanwhile, letting two workers both take the last slot).
-- Null p_rpm / p_tpm means no limit of that kind. A call bigger than the whole token budget
-- still goes through when the window is empty, or it could never run at all.
create function provider_budget_reserve(
    p_provider text, p_rpm integer, p_tpm integer, p_tokens integer, p_window_seconds real
)
returns table (ok boolean, call_id bigint, wait_seconds real)
language plpgsql
set search_path = public, pg_temp
as $$
declare
    v_now     timestamptz;
    v_window  interval := make_interval(secs => p_window_seconds);
    v_calls   integer;
    v_tokens  bigint;
    v_oldest  timestamptz;
    v_id      bigint;
begin
    insert into provider_limits (provider) values (p_provider) on conflict (provider) do nothing;
    perform 1 from provider_limits where provider = p_provider for update;
    v_now := clock_timestamp();
    delete from provider_calls where provider = p_provider and at <= v_now - v_window;
    select count(*), coalesce(sum(tokens), 0), min(at) into v_calls, v_tokens, v_oldest
    from provider_calls where provider = p_provider;
    if (p_rpm is not null and v_calls >= p_rpm)
       or (p_tpm is not null and v_calls > 0 and v_tokens + p_tokens > p_tpm) then
        -- The oldest call leaving the window frees the next slot (for tokens, perhaps not
        -- enough: the caller simply asks again).
        return query select false, null::bigint,
            greatest(extract(epoch from (v_oldest + v_window - v_now)), 0.001)::real;
        return;
    end if;
    insert into provider_calls (provider, at, tokens) values (p_provider, v_now, greatest(p_tokens, 0))
    returning id into v_id;
    return query select true, v_id, 0::real;
end
$$;

alter table provider_limits enable row level security;
alter table provider_limits force row level security;
alter table provider_calls enable row level security;
alter table provider_calls force row level security;

do $$
declare
    t text;
    r text;
begin
    foreach t in array array['provider_limits', 'provider_calls'] loop
        foreach r in array array['service_role', current_user::text] loop
            execute format(
                'create policy %I on %I for all to %I using (true) with check (true)',
                t || '_all_' || r, t, r
            );
        end loop;
    end loop;
end
$$;

grant all on provider_limits, provider_calls to service_role;
revoke all on function provider_budget_reserve(text, integer, integer, integer, real) from public;
grant execute on function provider_budget_reserve(text, integer, integer, integer, real) to service_role;
