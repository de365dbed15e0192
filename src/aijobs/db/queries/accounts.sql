-- Accounts and their credit ledger. Reads by the API run as `authenticated`, so row-level
-- security decides what a user sees; the user_id arguments only narrow it.

-- name: account_create
insert into aijobs.accounts (user_id) values (%(user_id)s) on conflict (user_id) do nothing returning user_id;

-- name: account_get
select user_id, balance, created_at, updated_at from aijobs.accounts where user_id = %(user_id)s;

-- name: credit_grant
select aijobs.grant_credits(%(user_id)s, %(amount)s, %(note)s, %(key)s) as balance;

-- name: ledger_for_user
select id, user_id, job_id, kind, amount, note, created_at from aijobs.credit_ledger
where user_id = %(user_id)s order by id desc limit %(limit)s;

-- name: api_balance
select balance from aijobs.accounts where user_id = %(user_id)s;

-- name: api_ledger_page
-- Newest first, keyset-paginated on the ledger's identity column.
select id, job_id, kind, amount, note, created_at from aijobs.credit_ledger
where user_id = %(user_id)s and (%(before_id)s::bigint is null or id < %(before_id)s::bigint)
order by id desc
limit %(limit)s;

-- name: account_settings_get
select brand_voice, business_name, signature, default_language, default_tone
from aijobs.account_settings where user_id = %(user_id)s;

-- name: account_settings_put
-- Written by the API's own role for the user it verified (or an admin); the table's checks
-- bound every field, so no caller stores what the model refuses.
insert into aijobs.account_settings as s
    (user_id, brand_voice, business_name, signature, default_language, default_tone)
values (%(user_id)s, %(brand_voice)s, %(business_name)s, %(signature)s, %(default_language)s, %(default_tone)s)
on conflict (user_id) do update
set brand_voice = excluded.brand_voice, business_name = excluded.business_name,
    signature = excluded.signature, default_language = excluded.default_language,
    default_tone = excluded.default_tone, updated_at = now()
returning brand_voice, business_name, signature, default_language, default_tone;

-- name: account_settings_for_job
-- The settings of the account that owns a job (the worker's, for types that use them).
select s.brand_voice, s.business_name, s.signature, s.default_language, s.default_tone
from aijobs.jobs j join aijobs.account_settings s on s.user_id = j.user_id
where j.id = %(job_id)s;

-- name: tenant_set_weight
-- A tenant's share of the workers when several have work waiting (a plan tier): weight 2
-- takes two turns for every one of weight 1. Applies to the jobs it creates from now on.
insert into aijobs.tenants (tenant, weight) values (%(tenant)s, %(weight)s)
on conflict (tenant) do update set weight = excluded.weight, updated_at = now()
returning weight;

-- name: tenant_set_max_running
-- A tenant's own limit on its running jobs, instead of the deployment's default (null: the
-- default). Applies to the claims from now on; jobs already running are not stopped.
insert into aijobs.tenants (tenant, max_running) values (%(tenant)s, %(max_running)s)
on conflict (tenant) do update set max_running = excluded.max_running, updated_at = now()
returning max_running;

-- name: tenant_set
-- A tenant's weight and its own limit on running jobs (null: the deployment's), both at once
-- (the admin API's PUT replaces the pair).
insert into aijobs.tenants (tenant, weight, max_running) values (%(tenant)s, %(weight)s, %(max_running)s)
on conflict (tenant) do update
    set weight = excluded.weight, max_running = excluded.max_running, updated_at = now()
returning weight, max_running;
