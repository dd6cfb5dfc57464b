-- bench/sql/ext_poll_2tx.sql (pgbench): the external worker protocol as a
-- real worker uses it: poll one task (a transaction), then complete it
-- (another transaction).
SELECT job_id, lease FROM workflow.poll_tasks('bench', 'w' || :client_id, 1) \gset
SELECT workflow.complete_task(:job_id, :lease, NULL);
