-- bench/sql/ext_poll_batch_2tx.sql (pgbench -D count=N): a batching worker
-- as it really runs: poll up to N tasks (a transaction), then report them
-- all with one complete_tasks() call (another transaction).  Needs -M
-- prepared or extended: the arrays are passed as parameters.
SELECT coalesce(array_agg(job_id), '{}') AS ids, coalesce(array_agg(lease), '{}') AS leases
  FROM workflow.poll_tasks('bench', 'w' || :client_id, :count) \gset
SELECT count(*) FROM workflow.complete_tasks(:ids, :leases);
