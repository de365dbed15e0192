-- Migration 003: a limit on each tenant's running jobs (the deployment's default in
-- `settings.max_running_per_tenant`, a tenant's own in `tenants.max_running`; null: no
-- limit), enforced by the claim through `claim_room`, which locks the limited tenants' rows
-- of `tenant_claims`; and `expedite_job`, which moves one pending job ahead of every other
-- tenant's (owner and service_role only). ../schema.sql shows the result.

alter table aijobs.settings
    add column max_running_per_tenant integer check (max_running_per_tenant > 0);

alter table aijobs.tenants
    add column max_running integer check (max_running > 0);
-- The claim asks whether any tenant has a limit of its own without reading every tenant.
create index tenants_max_running_idx on aijobs.tenants (tenant) where max_running is not null;

-- A limited tenant's running jobs are counted from these entries alone (never its backlog).
create index jobs_tenant_running_idx on aijobs.jobs (user_id) where status = 'processing';

-- One row per tenant whose claims have been limited: claims of a limited tenant lock its row
-- here, so they follow one another and each counts the running jobs of those before it. A
-- table of its own, not `tenants`: create_jobs holds a tenant's row there for its whole
-- transaction (a 10,000-job import), and the claims must not wait on that.
create table aijobs.tenant_claims (
    tenant  uuid primary key
);

do $$
declare
    r text;
begin
    alter table aijobs.tenant_claims enable row level security;
    alter table aijobs.tenant_claims force row level security;
    foreach r in array array['service_role', current_user::text] loop
        execute format(
            'create policy %I on aijobs.tenant_claims for all to %I using (true) with check (true)',
            'tenant_claims_all_' || r, r
        );
    end loop;
end
$$;
revoke all on aijobs.tenant_claims from public, anon, authenticated, service_role;
grant select, insert, update, delete on aijobs.tenant_claims to service_role;

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
begin
    select s.max_running_per_tenant into v_default from settings s;
    select coalesce(array_agg(w.tenant order by w.tenant), '{}') into v_limited
    from unnest(p_tenants) as w(tenant)
    where coalesce((select t.max_running from tenants t where t.tenant = w.tenant), v_default) is not null;
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
        select j.user_id, count(*) as running from jobs j
        where j.status = 'processing' and j.user_id = any(v_limited)
        group by j.user_id
    ) r on r.user_id = w.tenant;
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
    v_head  bigint;
    v_seq   bigint;
    v_user  uuid;
begin
    if not aijobs.caller_is_trusted() then
        raise exception 'only the service role may move a job ahead of other tenants' using errcode = 'AJ004';
    end if;
    if p_job_id is null then
        raise exception 'job id is required' using errcode = 'AJ005',
            detail = json_build_object('field', 'id', 'reason', 'is required')::text;
    end if;
    select j.user_id into v_user from jobs j where j.id = p_job_id and j.status = 'pending' for update;
    if not found then
        return;
    end if;
    select j.fair_tag into v_head from jobs j
    where j.status = 'pending' and j.run_at <= now()
    order by j.fair_tag, j.run_at, j.id limit 1;
    select min(j.tenant_seq) into v_seq from jobs j where j.user_id = v_user and j.status = 'pending';
    return query
    update jobs j
    set fair_tag = least(j.fair_tag, coalesce(v_head - 1, j.fair_tag)),
        tenant_seq = least(j.tenant_seq, coalesce(v_seq - 1, j.tenant_seq)),
        priority = 100,
        run_at = least(j.run_at, now()),
        updated_at = now()
    where j.id = p_job_id and j.status = 'pending'
    returning j.id, j.fair_tag;
end
$$;

revoke all on function aijobs.claim_room(uuid[], integer[]) from public, anon, authenticated, service_role;
revoke all on function aijobs.expedite_job(uuid) from public, anon, authenticated, service_role;
grant execute on function aijobs.expedite_job(uuid) to service_role;
