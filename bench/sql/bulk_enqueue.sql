-- bench/sql/bulk_enqueue.sql (pgbench -D n=N -D keys=0|1): one call of
-- workflow.create_jobs making N jobs of the 1-task workflow, with a new
-- idempotency key per job when keys = 1; the params are built in the same
-- statement.
SELECT count(*)
  FROM workflow.create_jobs('noop',
         (SELECT array_agg(jsonb_build_object('i', i)) FROM generate_series(1, :n) i),
         idempotency_keys => CASE WHEN :keys = 1
                                  THEN (SELECT array_agg(gen_random_uuid()::text) FROM generate_series(1, :n))
                             END);
