-- bench/sql/first_create_job.sql (pgbench -C): the first statement of a new
-- connection, create_job.
SELECT workflow.create_job('noop');
