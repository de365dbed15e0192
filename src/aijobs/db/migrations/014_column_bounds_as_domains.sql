-- The jobs table's single-column bounds become domains; the rules that relate columns stay
-- table CHECK constraints. What is refused does not change (SQLSTATE 23514, check_violation).
-- `cost >= 0` stays a table CHECK too: create_credit_consuming_job returns the column as
-- `integer`, and RETURN QUERY refuses a domain in its place; that check is one short node.
--
-- Why: PostgreSQL 15 reads every CHECK constraint of a table back from its stored text and
-- compiles it at every INSERT or UPDATE statement, then tests all of them on every row written,
-- whichever columns changed. `perf` on the backend running create_credit_consuming_job put 17%
-- of its time in ExecConstraints, most of it parsing those texts again (bench W1, issue 7).
-- A domain's check is parsed and planned once per backend (the type cache) and runs only where a
-- value is assigned to the column: at creation, and for `attempts` and `rate_limited_seconds` in
-- the statements that change them; a claim or a finish no longer re-tests the payload's shape.
--
-- Changing the column types rewrites `jobs` and its indexes once, under an ACCESS EXCLUSIVE
-- lock: on a large history, run this migration in a quiet window.

create domain job_payload as jsonb check (jsonb_typeof(value) = 'object');
create domain job_priority as smallint check (value between -100 and 100);
create domain job_attempt_count as integer check (value >= 0);
create domain job_max_attempts as integer check (value between 1 and 100);
create domain job_idempotency_key as text check (length(value) between 1 and 255);
create domain job_wait_seconds as real check (value >= 0);

alter table jobs
    drop constraint jobs_payload_check,
    drop constraint jobs_priority_check,
    drop constraint jobs_attempts_check,
    drop constraint jobs_max_attempts_check,
    drop constraint jobs_idempotency_key_check,
    drop constraint jobs_rate_limited_seconds_check,
    alter column payload type job_payload,
    alter column priority type job_priority,
    alter column attempts type job_attempt_count,
    alter column max_attempts type job_max_attempts,
    alter column idempotency_key type job_idempotency_key,
    alter column rate_limited_seconds type job_wait_seconds;

-- The ledger's kind list is already enforced by credit_ledger_sign, whose three branches each
-- name one kind: a fourth kind fails it. Testing the list again cost every ledger row a parse.
alter table credit_ledger drop constraint credit_ledger_kind_check;
