-- bench/sql/create_jobs.sql (psql -v wf=NAME -v n=N): N jobs of a workflow
-- in one transaction; prints the creation rate.
SELECT count(workflow.create_job(:'wf')) AS jobs,
       round(:n / extract(epoch FROM clock_timestamp() - now())) AS created_per_s
  FROM generate_series(1, :n);
