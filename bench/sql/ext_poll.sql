-- bench/sql/ext_poll.sql (pgbench -D count=N): an external worker's loop in
-- one statement: claim up to N tasks of type "bench" and complete each,
-- in one transaction.
WITH t AS (SELECT job_id, lease FROM workflow.poll_tasks('bench', 'w' || :client_id, :count))
SELECT count(workflow.complete_task(job_id, lease, NULL)) FROM t;
