-- Job helpers
-------------------------------------------------------------------------------

-- May role `caller' see and act on a job created by `creator'?  Its
-- creator may, and members of workflow_admin (superusers are members of
-- every role).
CREATE OR REPLACE FUNCTION workflow._may_see(creator regrole, caller oid)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (SELECT caller IS NULL OR creator = caller
        OR pg_has_role(caller, 'workflow_admin', 'MEMBER'));
END
$$;
COMMENT ON FUNCTION workflow._may_see(regrole, oid) IS
    'internal: whether a role may see and act on a job (its creator, or an administrator); NULL = internal caller';

-- Look a job up, locking it, or raise the standard error.  With a caller,
-- a job the caller may not see does not exist for it.
CREATE OR REPLACE FUNCTION workflow._lock_job(job_id bigint, caller oid DEFAULT NULL)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    j workflow.jobs;
BEGIN
    IF job_id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO j FROM workflow.jobs WHERE id = job_id FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT workflow._may_see(j.created_by, caller) THEN
        RAISE EXCEPTION 'job % does not exist', job_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._lock_job(bigint, oid) IS
    'internal: lock a job row for a state transition, or raise "job does not exist"';

-- Raise the standard wrong-state error.
CREATE OR REPLACE FUNCTION workflow._wrong_state(j workflow.jobs, action text, expected text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'cannot % job % because it is not %', action, j.id, expected
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = format('The job is %s.', j.execution);
END
$$;
COMMENT ON FUNCTION workflow._wrong_state(workflow.jobs, text, text) IS
    'internal: raise the error for a call made in the wrong state';

-- The step a job is at.
CREATE OR REPLACE FUNCTION workflow._task_of(j workflow.jobs)
RETURNS workflow.tasks
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r workflow.tasks;
BEGIN
    SELECT s.* INTO r FROM workflow.tasks s
     WHERE s.workflow_id = j.workflow_id AND s.phase = j.phase AND s.position = j.step;
    RETURN r;
END
$$;
COMMENT ON FUNCTION workflow._task_of(workflow.jobs) IS
    'internal: the task definition a job is at';

-- Delay before retry number n (n >= 1) of a task or a job.  Computed in
-- seconds as numeric and capped before it becomes an interval again, so it
-- saturates at max_delay (at most 100 years) instead of overflowing.
CREATE OR REPLACE FUNCTION workflow._backoff(backoff text, delay interval, max_delay interval, n integer)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN make_interval(secs => LEAST(
               extract(epoch FROM delay) * CASE backoff
                   WHEN 'linear' THEN GREATEST(n, 1)::numeric
                   WHEN 'exponential' THEN power(2::numeric, LEAST(GREATEST(n, 1) - 1, 64))
                   ELSE 1::numeric
               END,
               extract(epoch FROM coalesce(max_delay, interval '100 years')),
               extract(epoch FROM interval '100 years'))::double precision);
END
$$;
COMMENT ON FUNCTION workflow._backoff(text, interval, interval, integer) IS
    'internal: delay before the n-th retry for a fixed, linear or exponential backoff';

-- The outputs of the tasks of a job's attempt that succeeded so far; none
-- before the first task of the main chain, without a query.
CREATE OR REPLACE FUNCTION workflow._results(p_job bigint, p_attempt integer, p_phase workflow.phase,
                                             p_step integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF p_phase = 'chain' AND p_step = 0 THEN
        RETURN '{}'::jsonb;
    END IF;
    RETURN coalesce((SELECT jsonb_object_agg(r.task, r.output ORDER BY r.id)
                       FROM workflow.task_runs r
                      WHERE r.job_id = p_job AND r.job_attempt = p_attempt
                        AND r.status = 'succeeded'), '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION workflow._results(bigint, integer, workflow.phase, integer) IS
    'internal: the outputs of the tasks a job attempt has done so far, by task name';

-- The job context handed to a task (its $1; README, "Workflow definitions").
-- A child job's holds its item (foreach); a child that runs a chain of
-- its parent's workflow (a branch, a case, a foreach body) runs as part of
-- its parent's job: it sees that job, and its results before its own, and
-- itself under "child"; a sub-workflow's job names its parent.
CREATE OR REPLACE FUNCTION workflow.job_context(j workflow.jobs)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ctx     jsonb;
    p       workflow.jobs;
    parent  jsonb;
BEGIN
    ctx := jsonb_build_object(
        'job', jsonb_build_object('id', j.id, 'workflow', j.workflow, 'version', j.version,
                                  'params', j.params, 'target', j.target, 'attempt', j.attempt),
        'task', jsonb_build_object('name', (SELECT s.name FROM workflow.tasks s
                                             WHERE s.workflow_id = j.workflow_id
                                               AND s.phase = j.phase AND s.position = j.step),
                                   'attempt', j.task_attempt),
        'results', CASE WHEN j.phase = 'chain' AND j.step = 0 THEN '{}'::jsonb
                        ELSE coalesce((SELECT jsonb_object_agg(r.task, r.output ORDER BY r.id)
                                         FROM workflow.task_runs r
                                        WHERE r.job_id = j.id AND r.job_attempt = j.attempt
                                          AND r.status = 'succeeded'), '{}'::jsonb) END);
    IF j.parent_id IS NULL THEN
        RETURN ctx;
    END IF;
    IF j.item IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('item', j.item);
    END IF;
    SELECT * INTO p FROM workflow.jobs WHERE id = j.parent_id;
    IF FOUND AND EXISTS (SELECT 1 FROM workflow.workflows w
                          WHERE w.id = j.workflow_id AND w.part_of IS NOT NULL) THEN
        -- a chain of the parent's own workflow: it runs as part of the
        -- parent's job, whose job and results it sees
        parent := workflow.job_context(p);
        RETURN ctx || jsonb_build_object(
            'job', parent -> 'job',
            'results', (parent -> 'results') || (ctx -> 'results'),
            'child', jsonb_build_object('id', j.id, 'entry', j.parent_task, 'branch', j.branch,
                                        'index', j.child_index));
    END IF;
    ctx := ctx || jsonb_build_object(
        'parent', jsonb_build_object('id', j.parent_id, 'root_id', j.root_id, 'entry', j.parent_task,
                                     'index', j.child_index));
    RETURN ctx;
END
$$;
COMMENT ON FUNCTION workflow.job_context(workflow.jobs) IS
    'the context a task receives: the job, the task and the outputs of the tasks done so far';

-- Record one attempt of the current task of a job in workflow.task_runs.
CREATE OR REPLACE FUNCTION workflow._record_run(j workflow.jobs, task text, status text,
                                                started timestamptz, output jsonb, error jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO workflow.task_runs
        (job_id, job_attempt, phase, step, task, attempt, fallback, status, runner_id, lease,
         started_at, output, error)
    VALUES (j.id, j.attempt, j.phase, j.step, task, j.task_attempt, j.in_fallback,
            status, j.runner_id, j.lease, coalesce(started, now()), output, error);
END
$$;
COMMENT ON FUNCTION workflow._record_run(workflow.jobs, text, text, timestamptz, jsonb, jsonb) IS
    'internal: record an attempt of the current task of a job';

-- The task a job in progress is at; refuses a job with no task in progress.
CREATE OR REPLACE FUNCTION workflow._current_task(j workflow.jobs)
RETURNS workflow.tasks
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF j.execution NOT IN ('running', 'waiting') THEN
        RAISE EXCEPTION 'job % has no task in progress', j.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The job is %s.', j.execution);
    END IF;
    RETURN workflow._task_of(j);
END
$$;
COMMENT ON FUNCTION workflow._current_task(workflow.jobs) IS
    'internal: the task of a job in progress, or the wrong-state error';

-- Release the target held by a job that reached a terminal state, and
-- wake the runners at commit: the next job of that target may run now.
-- Returns how many executors that wakes (_wake_at_commit).
CREATE OR REPLACE FUNCTION workflow._release_target(p_owner regrole, p_target text, p_job bigint)
RETURNS integer
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM workflow.target_locks l
     WHERE l.owner = p_owner AND l.target = p_target AND l.job_id = p_job;
    RETURN workflow._wake_at_commit(NULL);
END
$$;
COMMENT ON FUNCTION workflow._release_target(regrole, text, bigint) IS
    'internal: free the target of a finished job so the next job of that target can run, and wake the runners at commit';

-- Move a locked job to a terminal state.
CREATE OR REPLACE FUNCTION workflow._terminate(j workflow.jobs, final workflow.execution,
                                               final_result jsonb, final_error jsonb)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE workflow.jobs
       SET execution = final, result = final_result, error = final_error,
           finished_at = clock_timestamp(), lease = NULL, lease_expires_at = NULL,
           task_type = NULL, in_fallback = false, waiting_for = NULL, signal_key = NULL
     WHERE id = j.id
    RETURNING * INTO j;
    IF j.target IS NOT NULL THEN
        PERFORM workflow._release_target(j.created_by, j.target, j.id);
    END IF;
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._terminate(workflow.jobs, workflow.execution, jsonb, jsonb) IS
    'internal: finish a job in a terminal state and release its target';

-- Put a locked job back in the queue at a given step.
CREATE OR REPLACE FUNCTION workflow._enqueue_task(j workflow.jobs, new_phase workflow.phase, new_step integer,
                                                  new_task_attempt integer, not_before timestamptz,
                                                  fallback boolean DEFAULT false)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    s workflow.tasks;
BEGIN
    SELECT * INTO s FROM workflow.tasks
     WHERE workflow_id = j.workflow_id AND phase = new_phase AND position = new_step;
    UPDATE workflow.jobs
       SET execution = 'queued', phase = new_phase, step = new_step,
           task_attempt = new_task_attempt, in_fallback = fallback,
           task_type = CASE WHEN fallback THEN NULL ELSE s.task_type END,
           run_at = not_before, runner_id = NULL, lease = NULL, lease_expires_at = NULL,
           claimed_at = NULL, waiting_for = NULL, signal_key = NULL
     WHERE id = j.id
    RETURNING * INTO j;
    PERFORM workflow._wake_at_commit(j.task_type);
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._enqueue_task(workflow.jobs, workflow.phase, integer, integer, timestamptz, boolean) IS
    'internal: re-queue a job at a step (next task, retry, or another chain)';

-- A job failed for good in this attempt: retry the whole job or fail it.
CREATE OR REPLACE FUNCTION workflow._job_failed(j workflow.jobs, err jsonb)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    w workflow.workflows;
BEGIN
    SELECT * INTO w FROM workflow.workflows WHERE id = j.workflow_id;
    IF j.attempt < w.max_attempts THEN
        UPDATE workflow.jobs SET attempt = attempt + 1, error = err, deadline = NULL WHERE id = j.id
        RETURNING * INTO j;
        RETURN workflow._enqueue_task(j, 'chain', 0, 1,
                   clock_timestamp() + workflow._backoff('exponential', w.initial_delay, w.max_delay, j.attempt - 1));
    END IF;
    RETURN workflow._terminate(j, 'failed', NULL, err);
END
$$;
COMMENT ON FUNCTION workflow._job_failed(workflow.jobs, jsonb) IS
    'internal: whole-job failure: another attempt after a backoff, or the final failed state';

-- The edge "a task succeeded", for a set of jobs at once: the one author
-- of every transition a task's success makes (src/README.md, "Task
-- succeeded").  For each job, in the order given: record the task's run,
-- then move the job on
--
--   next task in the phase     queued at it, for its executor, woken at
--                              commit; or, with keep_sql and an SQL next
--                              task, still running at it for the same
--                              runner under the same lease
--   end of chain               succeeded, with the output as its result
--   end of oncancel            canceled
--   end of onerror             _job_failed: another whole-job attempt, or
--                              failed
--
-- and release the target of a job that ended (_release_target).  A job
-- is moved only if it is running or waiting under the lease given (NULL
-- for a waiting job), locked here in the order given; the others are left
-- alone and missing from the result.  Returns per job moved: its position
-- in the arrays, id, the executor that held it, its new state, how many
-- executors its move wakes at commit, and for a job still running (an SQL
-- task kept) the address of its row's new version (src/guard.c reads
-- there first).
--
-- The arguments, by position (C executes this body as a statement of its
-- own, src/plans.c): $1 job ids, $2 leases, $3 outputs (NULL: none), $4
-- start of each task (NULL: when claimed), $5 end of each task (NULL:
-- now), $6 keep_sql, $7 external_only (only jobs at an external task: the
-- reports of external workers).
CREATE OR REPLACE FUNCTION workflow._tasks_succeeded(bigint[], bigint[], jsonb[], timestamptz[],
                                                     timestamptz[], boolean, boolean)
RETURNS TABLE (n bigint, job_id bigint, runner_id text, execution workflow.execution, woken integer,
               tid tid)
LANGUAGE sql
AS $$
WITH v AS (
    SELECT * FROM unnest($1, $2, coalesce($3, array_fill(NULL::jsonb, ARRAY[cardinality($1)])),
                         coalesce($4, array_fill(NULL::timestamptz, ARRAY[cardinality($1)])),
                         coalesce($5, array_fill(NULL::timestamptz, ARRAY[cardinality($1)])))
           WITH ORDINALITY AS v(id, lease, output, started, finished, n)),
c AS (
    SELECT j.id, j.workflow_id, j.phase, j.step, j.attempt, j.task_attempt, j.in_fallback,
           j.runner_id, j.lease, j.claimed_at, j.created_by, j.target,
           v.output, v.started, v.finished, v.n,
           cs.name AS task, ns.position AS next_step, ns.task_type AS next_type,
           CASE WHEN ns.position IS NOT NULL AND $6 AND ns.kind <> 'external' THEN 'running'
                WHEN ns.position IS NOT NULL THEN 'queued'
                WHEN j.phase = 'chain' THEN 'succeeded'
                WHEN j.phase = 'oncancel' THEN 'canceled'
           END::workflow.execution AS next_execution
      FROM v
      JOIN workflow.jobs j ON j.id = v.id
      JOIN workflow.tasks cs ON cs.workflow_id = j.workflow_id
           AND cs.phase = j.phase AND cs.position = j.step
      LEFT JOIN workflow.tasks ns ON ns.workflow_id = j.workflow_id
           AND ns.phase = j.phase AND ns.position = j.step + 1
     WHERE j.lease IS NOT DISTINCT FROM v.lease AND j.execution IN ('running', 'waiting')
       AND (NOT $7 OR j.task_type IS NOT NULL)
     ORDER BY v.n
       FOR NO KEY UPDATE OF j),
run AS (
    INSERT INTO workflow.task_runs
        (job_id, job_attempt, phase, step, task, attempt, fallback, status, runner_id, lease,
         started_at, finished_at, output)
    SELECT c.id, c.attempt, c.phase, c.step, c.task, c.task_attempt,
           c.in_fallback, 'succeeded', c.runner_id, c.lease,
           coalesce(c.started, c.claimed_at, pg_catalog.now()),
           coalesce(c.finished, pg_catalog.clock_timestamp()), c.output
      FROM c ORDER BY c.n),
moved AS (
    UPDATE workflow.jobs j
       SET execution = c.next_execution,
           step = coalesce(c.next_step, j.step),
           task_attempt = CASE WHEN c.next_step IS NULL THEN j.task_attempt ELSE 1 END,
           in_fallback = false,
           task_type = CASE WHEN c.next_execution = 'queued' THEN c.next_type END,
           run_at = CASE WHEN c.next_execution = 'queued' THEN pg_catalog.now() ELSE j.run_at END,
           runner_id = CASE WHEN c.next_execution = 'queued' THEN NULL ELSE j.runner_id END,
           claimed_at = CASE c.next_execution WHEN 'queued' THEN NULL
                             WHEN 'running' THEN pg_catalog.clock_timestamp()
                             ELSE j.claimed_at END,
           lease = CASE WHEN c.next_execution = 'running' THEN j.lease END,
           lease_expires_at = NULL, waiting_for = NULL, signal_key = NULL,
           result = CASE WHEN c.next_execution = 'succeeded' THEN c.output ELSE j.result END,
           error = CASE WHEN c.next_execution = 'succeeded' THEN NULL ELSE j.error END,
           finished_at = CASE WHEN c.next_execution IN ('succeeded', 'canceled')
                              THEN coalesce(c.finished, pg_catalog.clock_timestamp())
                              ELSE j.finished_at END
      FROM c
     -- by id: a version committed after this statement's snapshot and
     -- locked above is found from the visible one
     WHERE j.id = c.id AND c.next_execution IS NOT NULL
    -- the result of a job moved, with the calls its move makes
    RETURNING c.n, c.id, c.runner_id, c.next_execution,
              CASE WHEN c.next_execution = 'queued' THEN workflow._wake_at_commit(c.next_type)
                   -- a target is released by a call rather than a DELETE of
                   -- this statement, which every batch would start for nothing
                   WHEN c.next_execution IN ('succeeded', 'canceled') AND c.target IS NOT NULL
                   THEN workflow._release_target(c.created_by, c.target, c.id)
                   ELSE 0 END,
              CASE WHEN c.next_execution = 'running' THEN j.ctid END)
SELECT * FROM moved
UNION ALL
-- the end of onerror, with the job as locked above (which moved left
-- alone): the only place that reads the whole row
SELECT c.n, c.id, c.runner_id,
       (SELECT (workflow._job_failed(f.job, (f.job).error)).execution
          FROM (SELECT j AS job FROM workflow.jobs j WHERE j.id = c.id FOR NO KEY UPDATE) f),
       0, NULL
  FROM c
 WHERE c.next_execution IS NULL
 ORDER BY 1
$$;
COMMENT ON FUNCTION workflow._tasks_succeeded(bigint[], bigint[], jsonb[], timestamptz[], timestamptz[], boolean, boolean) IS
    'internal: the current tasks of a set of locked jobs succeeded: record them and move each job on';

-- The current task of a locked job succeeded with an output: the edge of
-- _tasks_succeeded for one job, which returns the job as it is now.
CREATE OR REPLACE FUNCTION workflow._task_succeeded(j workflow.jobs, output jsonb, started timestamptz,
                                                    keep_running boolean DEFAULT false)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM workflow._current_task(j);
    PERFORM workflow._tasks_succeeded(ARRAY[j.id], ARRAY[j.lease], ARRAY[output], ARRAY[started],
                                      NULL, keep_running, false);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % moved under the lock of its success', j.id
            USING ERRCODE = 'internal_error';
    END IF;
    SELECT * INTO j FROM workflow.jobs WHERE id = j.id;
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._task_succeeded(workflow.jobs, jsonb, timestamptz, boolean) IS
    'internal: record a task success and advance the job to its next task or final state';

-- The current task of a locked job failed for good (no attempt, no
-- fallback left, or the job's time is up): in the main chain the onerror
-- chain runs if there is one, else (and at the end of onerror) the job
-- attempt fails; in oncancel the cancellation stands.
CREATE OR REPLACE FUNCTION workflow._task_failed_for_good(j workflow.jobs, err jsonb)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM workflow._abandon_children(j, err);
    CASE j.phase
        WHEN 'chain' THEN
            IF EXISTS (SELECT 1 FROM workflow.tasks
                        WHERE workflow_id = j.workflow_id AND phase = 'onerror') THEN
                RETURN workflow._enqueue_task(j, 'onerror', 0, 1, now());
            END IF;
            RETURN workflow._job_failed(j, err);
        WHEN 'onerror' THEN
            RETURN workflow._job_failed(j, err);
        ELSE
            -- a failing oncancel task does not undo the cancellation
            RETURN workflow._terminate(j, 'canceled', NULL, err);
    END CASE;
END
$$;
COMMENT ON FUNCTION workflow._task_failed_for_good(workflow.jobs, jsonb) IS
    'internal: a task failed for good: the onerror chain, whole-job attempts, or the cancellation stands';

-- Cancel a locked job in progress with an error: its oncancel chain runs
-- if it has one, else it ends as canceled.
CREATE OR REPLACE FUNCTION workflow._cancel(j workflow.jobs, err jsonb)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM workflow._abandon_children(j, err);
    UPDATE workflow.jobs SET error = err WHERE id = j.id RETURNING * INTO j;
    IF EXISTS (SELECT 1 FROM workflow.tasks s
                WHERE s.workflow_id = j.workflow_id AND s.phase = 'oncancel') THEN
        RETURN workflow._enqueue_task(j, 'oncancel', 0, 1, now());
    END IF;
    RETURN workflow._terminate(j, 'canceled', NULL, err);
END
$$;
COMMENT ON FUNCTION workflow._cancel(workflow.jobs, jsonb) IS
    'internal: cancel a job in progress: its oncancel chain, else canceled';

-- Cancel a locked job in progress that is not being canceled yet: the
-- attempt of a running job ends as a canceled run, and the statement a
-- runner executes for it is interrupted once this commits; then _cancel.
CREATE OR REPLACE FUNCTION workflow._cancel_in_progress(j workflow.jobs, err jsonb)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
BEGIN
    IF j.execution = 'running' THEN
        PERFORM workflow._interrupt_at_commit(j.id);
        -- its executor's report, under a lease that is no longer current,
        -- is refused
        PERFORM workflow._record_run(j, (workflow._task_of(j)).name, 'canceled', j.claimed_at, NULL, err);
    END IF;
    RETURN workflow._cancel(j, err);
END
$$;
COMMENT ON FUNCTION workflow._cancel_in_progress(workflow.jobs, jsonb) IS
    'internal: cancel a job in progress, ending the attempt of a running one';

-- The current step of a locked job failed: retry it, run its fallback, or
-- fail the task for good (onerror chain, whole-job attempts, failed).
CREATE OR REPLACE FUNCTION workflow._task_failed(j workflow.jobs, err jsonb, started timestamptz,
                                                 retryable boolean DEFAULT true)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    cur     workflow.tasks;
BEGIN
    cur := workflow._current_task(j);
    err := jsonb_build_object('task', cur.name, 'phase', j.phase, 'attempt', j.task_attempt) || coalesce(err, '{}');
    PERFORM workflow._abandon_children(j, err);
    PERFORM workflow._record_run(j, cur.name, 'failed', started, NULL, err);
    UPDATE workflow.jobs SET error = err WHERE id = j.id RETURNING * INTO j;

    -- another attempt of the same task
    IF retryable AND NOT j.in_fallback AND j.task_attempt < cur.attempts THEN
        RETURN workflow._enqueue_task(j, j.phase, j.step, j.task_attempt + 1,
                   clock_timestamp() + workflow._backoff(cur.backoff, cur.delay, cur.max_delay, j.task_attempt));
    END IF;
    -- the fallback decides
    IF cur.fallback IS NOT NULL AND NOT j.in_fallback THEN
        RETURN workflow._enqueue_task(j, j.phase, j.step, j.task_attempt, now(), true);
    END IF;

    RETURN workflow._task_failed_for_good(j, err);
END
$$;
COMMENT ON FUNCTION workflow._task_failed(workflow.jobs, jsonb, timestamptz, boolean) IS
    'internal: record a task failure and apply retries, fallback, onerror and whole-job attempts';

-------------------------------------------------------------------------------
