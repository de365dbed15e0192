-- Accounts and their credit ledger. Reads by the API run as `authenticated`, so row-level
-- security decides what a user sees; the user_id arguments only narrow it.

-- name: account_create
insert into aijobs.accounts (user_id) values (%(user_id)s) on conflict (user_id) do nothing returning user_id;

-- name: account_get
select user_id, balance, created_at, updated_at from aijobs.accounts where user_id = %(user_id)s;

-- name: credit_grant
select aijobs.grant_credits(%(user_id)s, %(amount)s, %(note)s) as balance;

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

-- name: tenant_set_weight
-- A tenant's share of the workers when several have work waiting (a plan tier): weight 2
-- takes two turns for every one of weight 1. Applies to the jobs it creates from now on.
insert into aijobs.tenants (tenant, weight) values (%(tenant)s, %(weight)s)
on conflict (tenant) do update set weight = excluded.weight, updated_at = now()
returning weight;
