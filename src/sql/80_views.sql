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

-- Queues, their limits and their live jobs (security_invoker: a role
-- counts the jobs it may see; an administrator sees all)
CREATE OR REPLACE VIEW workflow.queue_status WITH (security_invoker = true) AS
SELECT n.name AS queue,
       q.concurrency,
       q.rate_limit,
       q.key_concurrency,
       coalesce(c.queued, 0) AS queued,
       coalesce(c.running, 0) AS running,
       coalesce(q.rate_interval, interval '1 second') AS rate_interval,
       coalesce(c.waiting, 0) AS waiting,
       c.oldest_queued
  FROM (SELECT 'default'::text AS name UNION SELECT x.name FROM workflow.queues x) n
  LEFT JOIN workflow.queues q ON q.name = n.name
  LEFT JOIN (SELECT j.queue,
                    count(*) FILTER (WHERE j.execution = 'queued') AS queued,
                    count(*) FILTER (WHERE j.execution = 'running') AS running,
                    count(*) FILTER (WHERE j.execution = 'waiting') AS waiting,
                    min(j.run_at) FILTER (WHERE j.execution = 'queued') AS oldest_queued
               FROM workflow.jobs j
              WHERE j.execution IN ('queued', 'running', 'waiting')
              GROUP BY j.queue) c ON c.queue = n.name;
COMMENT ON VIEW workflow.queue_status IS
    'per queue: its limits and its queued, running and waiting jobs (those the reader may see)';

-- The in-server workers as shared memory records them (src/launcher.c):
-- runner_status reads their liveness there, since pg_stat_activity hides
-- the start of other roles' backends from a role that is no superuser (nor
-- a member of pg_read_all_stats), and the workers that should run and
-- could not be started.
CREATE OR REPLACE FUNCTION workflow._in_server_workers(OUT id text, OUT kind text, OUT pid integer,
                                                       OUT started_at timestamptz, OUT problem text)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'workflow_in_server_workers';
COMMENT ON FUNCTION workflow._in_server_workers() IS
    'internal: the in-server workers of this database from shared memory: pid and start of each live one, and why each one that should run is not running (for workflow.runner_status)';

-- alive: a heartbeat within workflow.stale_after and, for an in-server
-- worker, its process: the one in its slot of shared memory, started
-- before it registered, or else a backend of pg_stat_activity that the
-- reader may see.  Workers that should run and could not be started are
-- rows of their own, with the reason in problem.
CREATE OR REPLACE VIEW workflow.runner_status WITH (security_invoker = true) AS
SELECT coalesce(r.id, w.id) AS id,
       coalesce(r.kind, w.kind) AS kind,
       -- a worker that could not be started has no process: the pid a
       -- row of an earlier start of the server holds is not its
       CASE WHEN w.problem IS NULL THEN r.pid END AS pid,
       r.started_at,
       r.active_at AS last_heartbeat,
       -- idle: holds no job now
       h.running_jobs = 0 AS idle,
       coalesce(r.active_at >= now() - current_setting('workflow.stale_after')::interval
                AND (r.kind = 'external'
                     OR (w.pid = r.pid AND w.started_at <= r.started_at)
                     OR EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = r.pid AND a.backend_start <= r.started_at)),
                false) AS alive,
       h.current_job,
       h.running_jobs,
       w.problem
  FROM workflow.runners r
  FULL JOIN workflow._in_server_workers() w ON w.id = r.id
 CROSS JOIN LATERAL (SELECT min(j.id) AS current_job, count(*) AS running_jobs
                       FROM workflow.jobs j
                      WHERE j.execution = 'running' AND j.runner_id = r.id) h
 WHERE r.id IS NOT NULL OR w.problem IS NOT NULL;
COMMENT ON VIEW workflow.runner_status IS
    'every runner: kind, pid, last heartbeat, whether it is alive, the job it is running, and why an in-server worker that should run is not running';

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
