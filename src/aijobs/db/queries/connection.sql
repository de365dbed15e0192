-- Upkeep of one connection's own server-side state.

-- name: conn_prepared_count
-- How many statements this session has prepared (psycopg's and any other).
select count(*) from pg_prepared_statements;

-- name: conn_deallocate_all
-- Drops them all. psycopg sees the command and forgets its own, and prepares again on use.
deallocate all;
