-- bench/sql/steady_create.sql (pgbench -R): create one job per transaction.
SELECT workflow.create_job('noop');
