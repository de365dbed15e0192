-- Named queries for the invariant checker (aijobs.queue.invariants, `aijobs check`).
-- Each `inv_*` check returns one row per violation: (subject, detail), at most %(limit)s
-- rows, plus `total` (the number of violations, counted before the limit) on every row.
-- They are read-only scans of the whole tables: meant for after a test and for an operator's
-- occasional check, not for the hot path. Run them in one snapshot (inv_snapshot first), so
-- a job that finishes between two checks cannot look inconsistent.

-- name: inv_snapshot
set transaction isolation level repeatable read, read only;

-- name: inv_job_lost
-- No job lost: every job is pending, terminal, or processing with a lease (live, or expired
-- and so taken back by the next worker's rescuer). A processing job without a lease, or a
-- terminal one without finished_at, is a job nothing will ever pick up or report correctly.
with bad as (
    select j.id::text as subject,
           case when j.status = 'processing' then 'processing without a lease (token '
                    || coalesce(j.lease_token::text, 'null') || ', expires '
                    || coalesce(j.lease_expires_at::text, 'null') || '): no worker can rescue it'
                else j.status::text || ' job with finished_at ' || coalesce(j.finished_at::text, 'null')
           end as detail
    from aijobs.jobs j
    where (j.status = 'processing' and (j.lease_token is null or j.lease_expires_at is null))
       or ((j.status in ('completed', 'failed', 'cancelled')) <> (j.finished_at is not null))
)
select subject, detail, count(*) over () as total from bad order by subject limit %(limit)s;

-- name: inv_attempt_budget
-- A job never runs more attempts than it was given: `attempts > max_attempts` means a
-- poison job looped past its budget.
select j.id::text as subject,
       j.status::text || ' with ' || j.attempts || ' attempts counted of ' || j.max_attempts as detail,
       count(*) over () as total
from aijobs.jobs j
where j.attempts > j.max_attempts
order by j.id
limit %(limit)s;

-- name: inv_balance
-- Every account's balance equals the sum of its ledger, and is never negative.
with sums as (
    select user_id, sum(amount) as total from aijobs.credit_ledger group by user_id
), bad as (
    select a.user_id::text as subject,
           'balance ' || a.balance || ', ledger sum ' || coalesce(s.total, 0) as detail
    from aijobs.accounts a
    left join sums s on s.user_id = a.user_id
    where a.balance <> coalesce(s.total, 0) or a.balance < 0
    union all
    select s.user_id::text, 'ledger rows for an account that does not exist (sum ' || s.total || ')'
    from sums s
    where not exists (select 1 from aijobs.accounts a where a.user_id = s.user_id)
)
select subject, detail, count(*) over () as total from bad order by subject limit %(limit)s;

-- name: inv_debit
-- Exactly one debit per job, of the job's cost (a free job may carry a zero debit). The
-- ledger outlives pruned jobs, so a debit whose job is gone is fine; a job without its debit,
-- or with two, is not.
with debits as (
    select job_id, count(*) as n, sum(amount) as amount, min(user_id::text) as user_id
    from aijobs.credit_ledger where kind = 'debit' group by job_id
), bad as (
    select j.id::text as subject,
           case when coalesce(d.n, 0) = 0 then 'no debit for a job costing ' || j.cost
                when d.n > 1 then d.n || ' debits (' || d.amount || ' credits) for one job'
                when d.amount <> -j.cost then 'debit of ' || d.amount || ' for a job costing ' || j.cost
                else 'debit charged to another user (' || d.user_id || ')'
           end as detail
    from aijobs.jobs j
    left join debits d on d.job_id = j.id
    where (coalesce(d.n, 0) = 0 and j.cost > 0)
       or d.n > 1
       or d.amount <> -j.cost
       or d.user_id <> j.user_id::text
)
select subject, detail, count(*) over () as total from bad order by subject limit %(limit)s;

-- name: inv_refund
-- At most one refund per job, of its cost, and only for a job that ended failed or
-- cancelled; and a failed or cancelled job that cost something has had its refund.
with refunds as (
    select job_id, count(*) as n, sum(amount) as amount
    from aijobs.credit_ledger where kind = 'refund' group by job_id
), bad as (
    select r.job_id::text as subject,
           case when r.n > 1 then r.n || ' refunds (' || r.amount || ' credits) for one job'
                when j.status not in ('failed', 'cancelled')
                    then 'refund of ' || r.amount || ' for a ' || j.status::text || ' job'
                else 'refund of ' || r.amount || ' for a job costing ' || j.cost
           end as detail
    from refunds r
    left join aijobs.jobs j on j.id = r.job_id
    where r.n > 1
       or (j.id is not null and (j.status not in ('failed', 'cancelled') or r.amount <> j.cost))
    union all
    select j.id::text, j.status::text || ' job costing ' || j.cost || ' was never refunded'
    from aijobs.jobs j
    where j.status in ('failed', 'cancelled') and j.cost > 0
      and not exists (select 1 from aijobs.credit_ledger l where l.job_id = j.id and l.kind = 'refund')
)
select subject, detail, count(*) over () as total from bad order by subject limit %(limit)s;

-- name: inv_completed_once
-- No job completed by two attempts: at most one attempt row ends `completed` per job, a
-- completed job has exactly one (and a result), and no other job has any.
with wins as (
    select job_id, count(*) as n from aijobs.job_attempts where outcome = 'completed' group by job_id
), bad as (
    select j.id::text as subject,
           case when coalesce(w.n, 0) > 1 then w.n || ' attempts completed one ' || j.status::text || ' job'
                when j.status = 'completed' and coalesce(w.n, 0) = 0 then 'completed without a completed attempt'
                when j.status = 'completed' then 'completed without a result'
                else j.status::text || ' job has a completed attempt'
           end as detail
    from aijobs.jobs j
    left join wins w on w.job_id = j.id
    where coalesce(w.n, 0) > 1
       or (j.status = 'completed' and (coalesce(w.n, 0) = 0 or j.result is null))
       or (j.status <> 'completed' and coalesce(w.n, 0) > 0)
)
select subject, detail, count(*) over () as total from bad order by subject limit %(limit)s;

-- name: inv_attempt_open
-- Attempt rows are written when attempts end, so every row is closed (finished_at and
-- outcome both set); a job still running under a token has no ended attempt under it.
with bad as (
    select a.lease_token::text as subject,
           case when (a.finished_at is null) <> (a.outcome is null)
                    then 'half-closed attempt of job ' || a.job_id || ' (finished_at '
                         || coalesce(a.finished_at::text, 'null') || ', outcome '
                         || coalesce(a.outcome, 'null') || ')'
                when a.finished_at is not null
                    then 'attempt ' || a.attempt || ' of job ' || a.job_id || ' ended ' || a.outcome
                         || ', but the job still runs under its token'
                else 'open attempt ' || a.attempt || ' of job ' || a.job_id || ' by ' || a.worker_id
                     || ', but the job is ' || j.status::text || ' under token '
                     || coalesce(j.lease_token::text, 'null')
           end as detail
    from aijobs.job_attempts a
    join aijobs.jobs j on j.id = a.job_id
    where ((a.finished_at is null) <> (a.outcome is null))
       or (a.finished_at is null and (j.status <> 'processing' or j.lease_token <> a.lease_token))
       or (a.finished_at is not null and j.status = 'processing' and j.lease_token = a.lease_token)
)
select subject, detail, count(*) over () as total from bad order by subject limit %(limit)s;

-- name: inv_summary
-- What was checked, for the report: jobs by status, expired leases awaiting rescue, ledger.
select (select count(*) from aijobs.jobs) as jobs,
       (select count(*) from aijobs.jobs where status = 'pending') as pending,
       (select count(*) from aijobs.jobs where status = 'processing') as processing,
       (select count(*) from aijobs.jobs where status = 'processing' and lease_expires_at < now()) as expired_leases,
       (select count(*) from aijobs.jobs where status = 'completed') as completed,
       (select count(*) from aijobs.jobs where status = 'failed') as failed,
       (select count(*) from aijobs.jobs where status = 'cancelled') as cancelled,
       (select count(*) from aijobs.job_attempts) as attempts,
       (select count(*) from aijobs.accounts) as accounts,
       (select count(*) from aijobs.credit_ledger) as ledger_rows;
