-- bench/sql/latency_create.sql (pgbench): create one job and record the
-- creating transaction's id, in one transaction.
INSERT INTO bench_created (job_id, xid) SELECT workflow.create_job('noop'), pg_current_xact_id();
