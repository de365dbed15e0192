-- name: account_create
insert into accounts (user_id) values (%(user_id)s) on conflict (user_id) do nothing returning user_id;

-- name: account_get
select user_id, balance, created_at, updated_at from accounts where user_id = %(user_id)s;

-- name: credit_grant
select credit_grant(%(user_id)s, %(amount)s, %(note)s) as balance;

-- name: ledger_for_user
select id, user_id, job_id, kind, amount, note, created_at from credit_ledger
where user_id = %(user_id)s order by id desc limit %(limit)s;
