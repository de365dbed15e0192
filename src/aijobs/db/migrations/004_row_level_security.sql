-- Row-level security is the enforcement: an API request runs as `authenticated` with its JWT
-- claims set locally, and sees only its own rows. Writes go through SECURITY DEFINER functions.
-- FORCE makes even the owner subject to policies, so the owner (the migrating role, which
-- the worker and CLI use) gets explicit all-rows policies: it bypasses RLS only by policy.

alter table accounts enable row level security;
alter table accounts force row level security;
alter table credit_ledger enable row level security;
alter table credit_ledger force row level security;
alter table jobs enable row level security;
alter table jobs force row level security;
alter table job_attempts enable row level security;
alter table job_attempts force row level security;
alter table job_types enable row level security;
alter table job_types force row level security;
alter table workers enable row level security;
alter table workers force row level security;

create policy accounts_own on accounts for select to authenticated using (user_id = auth.uid());
create policy credit_ledger_own on credit_ledger for select to authenticated using (user_id = auth.uid());
create policy jobs_own on jobs for select to authenticated using (user_id = auth.uid());
create policy job_attempts_own on job_attempts for select to authenticated
    using (exists (select 1 from jobs j where j.id = job_attempts.job_id and j.user_id = auth.uid()));
create policy job_types_read on job_types for select to anon, authenticated using (enabled);

do $$
declare
    t text;
    r text;
begin
    foreach t in array array['accounts', 'credit_ledger', 'jobs', 'job_attempts', 'job_types', 'workers'] loop
        foreach r in array array['service_role', current_user::text] loop
            execute format(
                'create policy %I on %I for all to %I using (true) with check (true)',
                t || '_all_' || r, t, r
            );
        end loop;
    end loop;
end
$$;

grant usage on schema public to anon, authenticated, service_role;
grant select on accounts, credit_ledger, jobs, job_attempts, job_types to authenticated;
grant select on job_types to anon;
grant all on accounts, credit_ledger, jobs, job_attempts, job_types, workers to service_role;
grant usage on sequence job_lease_seq to service_role;

revoke all on function create_credit_consuming_job(uuid, text, jsonb, smallint, timestamptz, integer, text, uuid) from public;
revoke all on function job_cancel(uuid, uuid) from public;
revoke all on function credit_grant(uuid, bigint, text) from public;
revoke all on function jobs_refund_on_terminal() from public;
grant execute on function create_credit_consuming_job(uuid, text, jsonb, smallint, timestamptz, integer, text, uuid)
    to authenticated, service_role;
grant execute on function job_cancel(uuid, uuid) to authenticated, service_role;
grant execute on function credit_grant(uuid, bigint, text) to service_role;
grant execute on function aijobs_acting_user(uuid) to authenticated, service_role;
