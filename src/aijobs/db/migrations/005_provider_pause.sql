-- Migration 005: a misconfigured provider is paused for every worker, not blamed on the jobs.
--
-- A wrong API key (401/403), an unknown model (404) or a base URL where nothing answers
-- (connection refused, a name that does not resolve) fails every job alike, and will until an
-- operator fixes the configuration. The worker that meets one records a pause on the
-- provider's row of `provider_limits`: no worker calls the provider while it stands, the job
-- is handed back with its attempt given back (no failure, no refund), and one worker at a
-- time (whoever claims `probe_after`) sends a small probe call, which lifts the pause when it
-- is answered. `/readyz`, `aijobs stats` and the dashboard read the pause from here.
--
-- Nothing new to grant: provider_limits keeps its row-level security and policies.

alter table aijobs.provider_limits
    -- Since when, and why, no worker calls this provider (null: not paused).
    add column paused_since   aijobs.instant,
    add column paused_reason  text,
    -- When the next probe may be sent; claimed by moving it on, so one worker probes at a time.
    add column probe_after    aijobs.instant,
    add constraint provider_limits_pause_check
        check ((paused_since is null) = (paused_reason is null) and (paused_since is null) = (probe_after is null));
