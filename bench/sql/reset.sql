-- bench/sql/reset.sql: empty the job tables between cases, so that each
-- case starts on fresh tables (DELETE + VACUUM would carry the previous
-- case's size over), and checkpoint, so that each starts at the same point
-- of the checkpoint cycle (full-page writes).  The jobs table first: the
-- runners and the sweeper lock it before the others, and so must this.
TRUNCATE workflow.jobs, workflow.task_runs, workflow.job_info, workflow.target_locks,
         bench_created;
DELETE FROM workflow.runners WHERE kind = 'external';
CHECKPOINT;
