-- bench/sql/latency_create.sql (pgbench): create one job and record the
-- creating transaction's id, in one transaction; then, at the next
-- statement (sent once the commit is acknowledged), the server's clock:
-- when the client knew the job was committed.  That time is written by an
-- asynchronous commit, which adds no WAL flush to the runner's path.
INSERT INTO bench_created (job_id, xid) SELECT workflow.create_job('noop'), pg_current_xact_id() RETURNING job_id \gset
SELECT extract(epoch FROM clock_timestamp()) AS acked \gset
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE bench_created SET acked = to_timestamp(:acked) WHERE job_id = :job_id;
COMMIT;
