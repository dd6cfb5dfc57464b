-- bench/sql/history.sql (psql -v n=N): N finished jobs of "noop" kept in
-- history, each with its task run, finished over the last 6 hours (inside
-- the default retention of 7 days), inserted directly.
WITH w AS (
    SELECT id, name, version FROM workflow.workflows
     WHERE name = 'noop' ORDER BY version DESC LIMIT 1
), j AS (
    INSERT INTO workflow.jobs
        (workflow_id, workflow, version, execution, created_by, created_at, run_at,
         started_at, finished_at, result, runner_id)
    SELECT w.id, w.name, w.version, 'succeeded', to_regrole(current_user),
           f - interval '3 ms', f - interval '3 ms', f - interval '1 ms', f, '1', NULL
      FROM w, generate_series(1, :n) g,
           LATERAL (SELECT now() - interval '6 hours' + g * (interval '6 hours' / :n)) t(f)
    RETURNING id, started_at, finished_at
)
INSERT INTO workflow.task_runs
    (job_id, job_attempt, phase, step, task, attempt, status, runner_id, lease,
     started_at, finished_at, output)
SELECT id, 1, 'chain', 0, 'a', 1, 'succeeded', 'runner-1', id, started_at, finished_at, '1'
  FROM j;
VACUUM ANALYZE workflow.jobs;
VACUUM ANALYZE workflow.task_runs;
