-- Status changes are announced on `aijobs_job_events` as "<job id> <status>" (no payload
-- text), so the API can stream a job's progress (SSE) without polling.
create function jobs_notify_status() returns trigger
language plpgsql as $$
begin
    perform pg_notify('aijobs_job_events', new.id::text || ' ' || new.status::text);
    return null;
end
$$;
create trigger jobs_notify_status
    after update of status on jobs
    for each row
    when (old.status is distinct from new.status)
    execute function jobs_notify_status();
