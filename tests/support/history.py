"""Fill a database with a large finished history, fast (generate_series, one statement each).

Used by the EXPLAIN tests (to make the planner face a big table) and by
bench/monitoring_queries.py (1,000,000 jobs). Jobs are spread evenly over `days` back from
now, with one attempt each carrying provider latency, tokens and cost; a few percent failed,
some retried; plus a live queue of pending and processing jobs.
"""

from __future__ import annotations

import uuid

import psycopg

HISTORY_USER = uuid.UUID("00000000-0000-4000-8000-00000000beef")

FILL_JOBS = """
insert into aijobs.jobs (user_id, tenant, type, payload, status, attempts, cost, error,
                  created_at, started_at, finished_at, updated_at)
select %(user)s, %(user)s,
       (array['ai_generation', 'sentiment_analysis', 'review_processing', 'prompt_analysis'])[1 + i %% 4],
       '{"text": "history"}'::jsonb,
       (case when i %% 25 = 0 then 'failed' when i %% 101 = 0 then 'cancelled'
             else 'completed' end)::aijobs.job_status,
       case when i %% 9 = 0 then 2 else 1 end,
       1,
       case when i %% 25 = 0 then 'provider error' end,
       t - interval '3 seconds', t - interval '2 seconds', t, t
from generate_series(1, %(n)s) as i,
     lateral (select now() - make_interval(secs => i * %(span)s::float8 / %(n)s)) as s(t)
"""

FILL_ATTEMPTS = """
insert into aijobs.job_attempts (lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome,
                          provider, model, latency_ms, input_tokens, output_tokens, cost_usd)
select nextval('aijobs.job_lease_seq'), id, attempts, 'history', started_at, finished_at,
       case status when 'completed' then 'completed' when 'failed' then 'failed' else 'cancelled' end,
       'offline', 'rules-v1', 200 + (hashtext(id::text) & 1023), 120, 80, 0.00002
from aijobs.jobs where user_id = %(user)s and finished_at is not null
"""

FILL_LIVE = """
insert into aijobs.jobs (user_id, tenant, type, payload, status, cost, created_at, run_at)
select %(user)s, %(user)s, 'sentiment_analysis', '{"text": "waiting"}'::jsonb, 'pending', 1,
       now() - make_interval(secs => i), now() + interval '1 day'
from generate_series(1, %(pending)s) as i
"""


def fill_history(url: str, *, jobs: int, days: float = 7.0, pending: int = 1000) -> None:
    """Insert `jobs` finished jobs (and their attempts) plus `pending` future jobs, then analyze."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into aijobs.accounts (user_id) values (%s) on conflict do nothing", (HISTORY_USER,)
        )
        params = {"user": HISTORY_USER, "n": jobs, "span": days * 86400.0, "pending": pending}
        conn.execute(FILL_JOBS, params)
        conn.execute(FILL_ATTEMPTS, params)
        conn.execute(FILL_LIVE, params)
        # The visibility map makes the covering indexes index-only; statistics steer the planner.
        conn.execute("vacuum (analyze) aijobs.jobs")
        conn.execute("vacuum (analyze) aijobs.job_attempts")
