-- What running attempts stream (aijobs.job_stream_chunks): written by the worker, read by
-- the API's event streams.

-- name: job_stream_append
-- Only while this attempt holds the job's lease (the fence); subscribers are told by NOTIFY
-- which piece to read, never its text.
with written as (
    insert into aijobs.job_stream_chunks (job_id, lease_token, seq, text)
    select %(job_id)s, %(lease_token)s, %(seq)s, %(text)s
    where exists (
        select from aijobs.jobs j
        where j.id = %(job_id)s and j.lease_token = %(lease_token)s and j.status = 'processing'
    )
    on conflict do nothing
    returning job_id, lease_token, seq
)
select pg_notify('aijobs_job_stream', job_id::text || ' ' || lease_token::text || ' ' || seq::text)
from written;

-- name: job_stream_read
-- The pieces of the job's latest attempt after (lease, seq): all of them when that attempt
-- is a later one than the reader's.
select c.lease_token, c.seq, c.text
from aijobs.job_stream_chunks c
where c.job_id = %(job_id)s
  and c.lease_token = (select max(l.lease_token) from aijobs.job_stream_chunks l where l.job_id = %(job_id)s)
  and (c.lease_token > %(lease_token)s or c.seq > %(seq)s)
order by c.seq;

-- name: job_stream_prune
-- Pieces of attempts that no longer run (ended, superseded), after a grace period for
-- readers still catching up; one batch.
with gone as (
    delete from aijobs.job_stream_chunks c
    where (c.job_id, c.lease_token, c.seq) in (
        select o.job_id, o.lease_token, o.seq from aijobs.job_stream_chunks o
        where o.created_at < now() - make_interval(secs => %(grace_seconds)s)
          and not exists (
              select from aijobs.jobs j
              where j.id = o.job_id and j.lease_token = o.lease_token and j.status = 'processing'
          )
        limit %(batch)s
    )
    returning 1
)
select count(*) from gone;
