-- Migration 004: a job type can be paused in a deployment. Its pending jobs are then not
-- claimed: they wait, kept and charged, and run in their turn once it is resumed; creations
-- are still accepted and wait with them (as pausing a queue does in River or Celery, unlike
-- `enabled`, which refuses creations and lets pending jobs run). The claim reads the paused
-- names once per statement (the table holds a handful of rows); ../queries/jobs.sql.

alter table aijobs.job_types add column paused boolean not null default false;
