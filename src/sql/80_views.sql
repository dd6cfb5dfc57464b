-- Views
-------------------------------------------------------------------------------

CREATE OR REPLACE VIEW workflow.job_summary WITH (security_invoker = true) AS
SELECT j.workflow,
       j.execution,
       count(*) AS jobs,
       count(*) FILTER (WHERE j.created_at > now() - interval '1 hour') AS last_hour,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY j.started_at - j.created_at)
           FILTER (WHERE j.started_at > now() - interval '1 hour') AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY j.started_at - j.created_at)
           FILTER (WHERE j.started_at > now() - interval '1 hour') AS wait_p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY j.started_at - j.created_at)
           FILTER (WHERE j.started_at > now() - interval '1 hour') AS wait_p99,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY j.finished_at - j.started_at)
           FILTER (WHERE j.finished_at > now() - interval '1 hour') AS duration_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY j.finished_at - j.started_at)
           FILTER (WHERE j.finished_at > now() - interval '1 hour') AS duration_p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY j.finished_at - j.started_at)
           FILTER (WHERE j.finished_at > now() - interval '1 hour') AS duration_p99
  FROM workflow.jobs j
 GROUP BY j.workflow, j.execution;
COMMENT ON VIEW workflow.job_summary IS
    'per workflow and state: job counts, and over the last hour queue wait (created to started) and run duration percentiles';

CREATE OR REPLACE VIEW workflow.runner_status WITH (security_invoker = true) AS
SELECT r.id,
       r.kind,
       r.pid,
       r.started_at,
       r.active_at AS last_heartbeat,
       -- idle: holds no job now
       h.running_jobs = 0 AS idle,
       (r.active_at >= now() - current_setting('workflow.stale_after')::interval
        AND (r.kind = 'external'
             OR EXISTS (SELECT 1 FROM pg_stat_activity a
                         WHERE a.pid = r.pid AND a.backend_start <= r.started_at))) AS alive,
       h.current_job,
       h.running_jobs
  FROM workflow.runners r
 CROSS JOIN LATERAL (SELECT min(j.id) AS current_job, count(*) AS running_jobs
                       FROM workflow.jobs j
                      WHERE j.execution = 'running' AND j.runner_id = r.id) h;
COMMENT ON VIEW workflow.runner_status IS
    'every runner: kind, pid, last heartbeat, whether it is alive, and the job it is running';

CREATE OR REPLACE VIEW workflow.failed_jobs WITH (security_invoker = true) AS
SELECT j.id,
       j.workflow,
       j.version,
       j.created_by,
       j.finished_at,
       j.attempt,
       j.error ->> 'task' AS task,
       j.error ->> 'sqlstate' AS sqlstate,
       j.error ->> 'message' AS message,
       j.error ->> 'detail' AS detail,
       j.error
  FROM workflow.jobs j
 WHERE j.execution = 'failed'
 ORDER BY j.finished_at DESC, j.id DESC;
COMMENT ON VIEW workflow.failed_jobs IS
    'failed jobs, most recent first, with the task, SQLSTATE and message of their error';

CREATE OR REPLACE VIEW workflow.slow_jobs WITH (security_invoker = true) AS
SELECT j.id,
       j.workflow,
       j.execution,
       j.created_by,
       j.started_at,
       j.finished_at,
       coalesce(j.finished_at, now()) - j.started_at AS duration,
       j.runner_id,
       (SELECT s.name FROM workflow.tasks s
         WHERE s.workflow_id = j.workflow_id AND s.phase = j.phase AND s.position = j.step) AS task
  FROM workflow.jobs j
 WHERE j.started_at IS NOT NULL
   AND (j.finished_at IS NULL OR j.finished_at > now() - interval '1 day')
 ORDER BY duration DESC, j.id;
COMMENT ON VIEW workflow.slow_jobs IS
    'the slowest jobs of the last day (running ones included), slowest first';

-------------------------------------------------------------------------------
