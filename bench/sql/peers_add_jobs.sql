-- bench/sql/peers_add_jobs.sql (psql -v n=N, database "peers", case 7): N
-- jobs of graphile-worker's task "noop" with one add_jobs call, in one
-- transaction; prints the creation rate.
SELECT count(*) AS jobs,
       round(:n / extract(epoch FROM clock_timestamp() - now())) AS created_per_s
  FROM graphile_worker.add_jobs(array(
           SELECT ROW('noop', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
             FROM generate_series(1, :n)));
