-- The seed's atomic credit consumption, done in one function: check the balance, debit it,
-- write the ledger row and insert the job, or refuse with a typed error and change nothing.
--
-- Error codes (SQLSTATE class AJ, mapped to Python exceptions in aijobs.queue.errors):
--   AJ001 unknown job type   AJ002 unknown user   AJ003 insufficient credits
--   AJ004 forbidden (creating for another user, or no authenticated user)
--   AJ005 invalid argument

-- Which user the caller may act for: a request running as `authenticated`/`anon` acts only
-- for its own JWT subject; a server-side caller (worker, CLI, admin) names the user.
create function aijobs_acting_user(p_user_id uuid) returns uuid
language plpgsql stable
set search_path = public, pg_temp
as $$
declare
    v_uid uuid := auth.uid();
begin
    if coalesce(current_setting('role', true), 'none') in ('authenticated', 'anon') then
        if v_uid is null then
            raise exception 'not authenticated' using errcode = 'AJ004';
        end if;
        if p_user_id is not null and p_user_id <> v_uid then
            raise exception 'cannot act for another user' using errcode = 'AJ004';
        end if;
        return v_uid;
    end if;
    if p_user_id is null then
        raise exception 'user_id is required' using errcode = 'AJ005';
    end if;
    return p_user_id;
end
$$;

create function create_credit_consuming_job(
    p_user_id          uuid,
    p_type             text,
    p_payload          jsonb,
    p_priority         smallint default 0,
    p_run_at           timestamptz default null,
    p_max_attempts     integer default 4,
    p_idempotency_key  text default null,
    p_retry_of         uuid default null
)
returns table (
    id uuid, status job_status, cost integer, balance bigint, created boolean,
    created_at timestamptz, run_at timestamptz
)
language plpgsql
security definer
set search_path = public, pg_temp
as $$
declare
    v_user     uuid := aijobs_acting_user(p_user_id);
    v_cost     integer;
    v_balance  bigint;
    v_job      jobs%rowtype;
begin
    if p_payload is null or jsonb_typeof(p_payload) <> 'object' then
        raise exception 'payload must be a JSON object' using errcode = 'AJ005';
    end if;

    select t.cost into v_cost from job_types t where t.name = p_type and t.enabled;
    if not found then
        raise exception 'unknown job type: %', p_type using errcode = 'AJ001',
            detail = json_build_object('type', p_type)::text;
    end if;

    -- Lock the account row: concurrent creations for one user (and idempotency-key races)
    -- serialize here, so the balance check below cannot be raced.
    select a.balance into v_balance from accounts a where a.user_id = v_user for update;
    if not found then
        raise exception 'unknown user: %', v_user using errcode = 'AJ002',
            detail = json_build_object('user_id', v_user)::text;
    end if;

    if p_idempotency_key is not null then
        select * into v_job from jobs j where j.user_id = v_user and j.idempotency_key = p_idempotency_key;
        if found then
            return query select v_job.id, v_job.status, v_job.cost, v_balance, false, v_job.created_at, v_job.run_at;
            return;
        end if;
    end if;

    if v_balance < v_cost then
        raise exception 'insufficient credits: balance %, cost %', v_balance, v_cost using errcode = 'AJ003',
            detail = json_build_object('balance', v_balance, 'cost', v_cost)::text;
    end if;

    insert into jobs (user_id, type, payload, priority, run_at, max_attempts, cost, idempotency_key, retry_of)
    values (v_user, p_type, p_payload, coalesce(p_priority, 0), coalesce(p_run_at, now()),
            coalesce(p_max_attempts, 4), v_cost, p_idempotency_key, p_retry_of)
    returning * into v_job;

    update accounts a set balance = a.balance - v_cost, updated_at = now()
    where a.user_id = v_user
    returning a.balance into v_balance;

    insert into credit_ledger (user_id, job_id, kind, amount, note)
    values (v_user, v_job.id, 'debit', -v_cost, p_type);

    -- Wake workers. Only the type travels: never payload text.
    perform pg_notify('aijobs_jobs', p_type);

    return query select v_job.id, v_job.status, v_job.cost, v_balance, true, v_job.created_at, v_job.run_at;
end
$$;

-- A refund is a consequence of a job *becoming* failed or cancelled, wherever that happens
-- (worker, rescuer, cancel, admin). The unique index on the ledger makes it at most once.
create function jobs_refund_on_terminal() returns trigger
language plpgsql
security definer
set search_path = public, pg_temp
as $$
declare
    v_amount bigint;
begin
    if new.cost > 0 then
        insert into credit_ledger (user_id, job_id, kind, amount, note)
        values (new.user_id, new.id, 'refund', new.cost, 'job ' || new.status::text)
        on conflict (job_id, kind) where job_id is not null do nothing
        returning amount into v_amount;
        if v_amount is not null then
            update accounts set balance = balance + v_amount, updated_at = now()
            where user_id = new.user_id;
        end if;
    end if;
    return null;
end
$$;
create trigger jobs_refund_on_terminal
    after update of status on jobs
    for each row
    when (new.status in ('failed', 'cancelled') and old.status is distinct from new.status)
    execute function jobs_refund_on_terminal();

-- Cancel: a pending job ends `cancelled` at once (and is refunded by the trigger); a running
-- job is asked to stop — its worker sees the flag at its next heartbeat or on NOTIFY.
create function job_cancel(p_job_id uuid, p_user_id uuid default null)
returns table (id uuid, status job_status, cancel_requested boolean)
language plpgsql
security definer
set search_path = public, pg_temp
as $$
declare
    v_owner uuid;
    v_scope_all boolean := coalesce(current_setting('role', true), 'none') not in ('authenticated', 'anon')
                           and p_user_id is null;
begin
    if not v_scope_all then
        v_owner := aijobs_acting_user(p_user_id);
    end if;
    return query
    update jobs j set status = 'cancelled', finished_at = now(), updated_at = now(),
                      error = 'cancelled before it started'
    where j.id = p_job_id and j.status = 'pending' and (v_scope_all or j.user_id = v_owner)
    returning j.id, j.status, j.cancel_requested;
    if found then
        return;
    end if;
    return query
    update jobs j set cancel_requested = true, updated_at = now()
    where j.id = p_job_id and j.status = 'processing' and (v_scope_all or j.user_id = v_owner)
    returning j.id, j.status, j.cancel_requested;
    if found then
        perform pg_notify('aijobs_cancel', p_job_id::text);
        return;
    end if;
    return query
    select j.id, j.status, j.cancel_requested from jobs j
    where j.id = p_job_id and (v_scope_all or j.user_id = v_owner);
end
$$;

-- Grants are ledger rows too; the account is created on first grant.
create function credit_grant(p_user_id uuid, p_amount bigint, p_note text default 'grant')
returns bigint
language plpgsql
set search_path = public, pg_temp
as $$
declare
    v_balance bigint;
begin
    if p_amount is null or p_amount <= 0 then
        raise exception 'amount must be positive' using errcode = 'AJ005';
    end if;
    insert into accounts (user_id) values (p_user_id) on conflict (user_id) do nothing;
    perform 1 from accounts where user_id = p_user_id for update;
    insert into credit_ledger (user_id, kind, amount, note) values (p_user_id, 'grant', p_amount, p_note);
    update accounts set balance = balance + p_amount, updated_at = now()
    where user_id = p_user_id returning balance into v_balance;
    return v_balance;
end
$$;
