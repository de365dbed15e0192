-- Named queries for provider rate limits and pauses. Holds, pauses and budgets are shared by
-- every worker through these rows; see aijobs.worker.provider_gate.

-- name: provider_hold_get
-- Seconds left on a provider's hold, by the database clock (0 when none is in force), and
-- why it is paused (null when it is not).
select coalesce(greatest(extract(epoch from (hold_until - now())), 0), 0)::float8 as hold_seconds,
       paused_reason
from aijobs.provider_limits where provider = %(provider)s;

-- name: provider_pause
-- The provider is misconfigured (a wrong key, an unknown model, nothing at its base URL):
-- pause it for every worker, with the latest reason. A pause already in force keeps its start
-- and its probe time. `newly_paused` is true for the one call that started it (a concurrent
-- one waits for the row lock and then finds it set by another transaction's now()).
insert into aijobs.provider_limits as p (provider, paused_since, paused_reason, probe_after, updated_at)
values (%(provider)s, now(), %(reason)s, now() + make_interval(secs => %(probe_seconds)s::float8), now())
on conflict (provider) do update
set paused_since = coalesce(p.paused_since, excluded.paused_since),
    paused_reason = excluded.paused_reason,
    probe_after = coalesce(p.probe_after, excluded.probe_after),
    updated_at = now()
returning paused_since = now() as newly_paused;

-- name: provider_probe_claim
-- Take the turn to probe a paused provider, once `probe_after` has passed: moving it on is the
-- claim, so of the workers that try at once one gets the row (the others, after waiting for its
-- lock, find `probe_after` in the future). Answers the pause's reason, or nothing.
update aijobs.provider_limits
set probe_after = now() + make_interval(secs => %(probe_seconds)s::float8), updated_at = now()
where provider = %(provider)s and paused_since is not null and probe_after <= now()
returning paused_reason;

-- name: provider_resume
-- A probe was answered: lift the pause. Answers how long it lasted, or nothing when it was
-- no longer in force.
update aijobs.provider_limits p
set paused_since = null, paused_reason = null, probe_after = null, updated_at = now()
from (select provider, paused_since from aijobs.provider_limits
      where provider = %(provider)s for update) old
where p.provider = old.provider and old.paused_since is not null
returning greatest(extract(epoch from (now() - old.paused_since)), 0)::float8 as paused_seconds;

-- name: provider_pauses
-- Every provider paused now, for /readyz, `aijobs stats` and the dashboard.
select provider, paused_since, paused_reason,
       greatest(extract(epoch from (now() - paused_since)), 0)::float8 as paused_seconds
from aijobs.provider_limits where paused_since is not null
order by provider;

-- name: provider_rate_limited
-- A call was rate limited: hold the provider for every worker until `retry_after` from now
-- (never shortening a longer hold already set; `extend` is false when the job was only held
-- back by a hold already in force), and add the wait to the job's total, fenced by
-- the lease token like every write on a running job. The job waits at least `min_wait`, its
-- own backoff, which does not hold the other jobs back. Answers the hold actually in force
-- and the job's new total (null when the lease was lost).
with hold as (
    insert into aijobs.provider_limits as p (provider, hold_until, hold_reason, holds, updated_at)
    values (%(provider)s, now() + make_interval(secs => %(retry_after)s::float8), %(reason)s, 1, now())
    on conflict (provider) do update
    set hold_until = case when %(extend)s then greatest(coalesce(p.hold_until, excluded.hold_until), excluded.hold_until)
                          else p.hold_until end,
        hold_reason = case when %(extend)s then excluded.hold_reason else p.hold_reason end,
        holds = p.holds + case when %(extend)s then 1 else 0 end,
        updated_at = now()
    returning hold_until
), waited as (
    update aijobs.jobs
    set rate_limited_seconds = rate_limited_seconds
            + greatest(%(retry_after)s::float8, %(min_wait)s::float8,
                       extract(epoch from ((select hold_until from hold) - now())))
    where id = %(job_id)s and lease_token = %(lease_token)s and status = 'processing'
    returning rate_limited_seconds
)
select greatest(extract(epoch from ((select hold_until from hold) - now())), 0)::float8 as hold_seconds,
       (select rate_limited_seconds from waited)::float8 as total_wait_seconds;

-- name: provider_budget_reserve
select ok, call_id, wait_seconds::float8 as wait_seconds
from aijobs.provider_budget_reserve(
    %(provider)s::text, %(rpm)s::integer, %(tpm)s::integer, %(tokens)s::integer, %(window_seconds)s::real
);

-- name: provider_budget_settle
-- The call is over: it now counts from its end, not its start (so a request slowed on its
-- way out can never land within one window of the next: the server's count is what matters),
-- and with the tokens it really used instead of the estimate (null: keep the estimate).
update aijobs.provider_calls
set at = greatest(at, clock_timestamp()), tokens = coalesce(%(tokens)s::integer, tokens)
where id = %(call_id)s;

-- name: provider_limits_get
select provider, hold_until, hold_reason, holds, updated_at, paused_since, paused_reason,
       (select count(*) from aijobs.provider_calls c where c.provider = p.provider) as recent_calls
from aijobs.provider_limits p where provider = %(provider)s;

-- name: provider_usage_for_job
-- What a job's attempts cost, summed (every attempt: failed calls are billed too).
select job_id, count(*) as attempts, count(request_id) as calls,
       coalesce(sum(input_tokens), 0) as input_tokens, coalesce(sum(output_tokens), 0) as output_tokens,
       coalesce(sum(reasoning_tokens), 0) as reasoning_tokens, sum(cost_usd) as cost_usd,
       avg(latency_ms) filter (where outcome = 'completed') as avg_latency_ms
from aijobs.job_attempts where job_id = %(job_id)s
group by job_id;

-- name: provider_usage_by_user
-- Per user, provider and model over the last `hours`: calls, tokens and estimated cost.
select j.user_id, a.provider, a.model, count(*) as calls,
       coalesce(sum(a.input_tokens), 0) as input_tokens, coalesce(sum(a.output_tokens), 0) as output_tokens,
       coalesce(sum(a.reasoning_tokens), 0) as reasoning_tokens, sum(a.cost_usd) as cost_usd
from aijobs.job_attempts a join aijobs.jobs j on j.id = a.job_id
where a.provider is not null
  and a.started_at > now() - make_interval(hours => %(hours)s::integer)
  and (%(user_id)s::uuid is null or j.user_id = %(user_id)s::uuid)
group by j.user_id, a.provider, a.model
order by cost_usd desc nulls last, calls desc;
