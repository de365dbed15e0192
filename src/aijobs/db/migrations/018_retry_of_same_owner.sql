-- retry_of names one of the acting user's own jobs.
--
-- create_credit_consuming_job (003) inserted p_retry_of unchecked, and `authenticated` may
-- call it directly (a Supabase/PostgREST RPC), so a user could link a new job of theirs to
-- another user's job: the admin dashboard then showed that user's job as "requeued as" the
-- caller's. Only the foreign key refused an id that does not exist at all, and that made
-- the function an oracle: a foreign-key error for an absent id, a new job for anyone's.
--
-- Now a non-null p_retry_of must be a job of v_user, or the function refuses with AJ005
-- (invalid argument, detail {"field": "retry_of"}) and changes nothing. "No such job" and
-- "another user's job" get the same message, so the refusal does not tell whether an id
-- exists. The check runs only when p_retry_of is given (one primary-key probe), and after
-- the idempotency-key replay, which still returns the job the key created.
--
-- Same signature and body otherwise. CREATE OR REPLACE keeps the function's owner and its
-- ACL (migrations 004 and 017), and this migration creates no new object.

create or replace function create_credit_consuming_job(
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

    -- Only a job of the acting user may be named: the same refusal whether the id is
    -- absent or another user's, so it does not tell which. Read under the account lock,
    -- after the replay above (a replay returns its job whatever this argument says).
    if p_retry_of is not null
       and not exists (select from jobs r where r.id = p_retry_of and r.user_id = v_user) then
        raise exception 'retry_of must name one of your jobs' using errcode = 'AJ005',
            detail = json_build_object('field', 'retry_of')::text;
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
