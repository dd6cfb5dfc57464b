-- bench/sql/ext_poll_batch.sql (pgbench -D count=N): an external worker's
-- loop in one statement: claim up to N tasks of type "bench" and report
-- them all with one complete_tasks() call, in one transaction.
WITH t AS (SELECT job_id, lease FROM workflow.poll_tasks('bench', 'w' || :client_id, :count))
SELECT count(*) FROM workflow.complete_tasks((SELECT array_agg(job_id) FROM t),
                                             (SELECT array_agg(lease) FROM t));
