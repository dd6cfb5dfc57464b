-- bench/sql/steady_create.sql (pgbench -R -D batch=N): create N jobs in one
-- transaction.
SELECT count(workflow.create_job('noop')) FROM generate_series(1, :batch);
