-- The API's in-flight cap counts one user's pending and processing jobs on every creation
-- (create_job_within_cap). Without an index of its own the planner combined the user index
-- (all of the user's history) with jobs_active_idx (every user's live jobs), so each request
-- read the whole live queue: ~1 ms per creation with 8,000 jobs waiting, growing with the
-- queue. This index holds exactly the rows the count needs.
create index jobs_user_active_idx on jobs (user_id) where status in ('pending', 'processing');
