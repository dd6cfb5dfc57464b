-------------------------------------------------------------------------------
-- In-server runners: the functions a task calls, and those of src/runner.c
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION workflow._interrupt_at_commit(job_id bigint)
RETURNS void
LANGUAGE c STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_interrupt_at_commit';
COMMENT ON FUNCTION workflow._interrupt_at_commit(bigint) IS
    'internal: when this transaction commits, cancel the SQL a runner is executing for this job (any number of jobs; undone with a rolled-back subtransaction; PREPARE TRANSACTION is refused while one is pending)';

CREATE OR REPLACE FUNCTION workflow.requeue("after" interval DEFAULT '0')
RETURNS void
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_task_requeue';
COMMENT ON FUNCTION workflow.requeue(interval) IS
    'from inside an SQL task: when the task ends, queue the job again at the same task after the delay';

CREATE OR REPLACE FUNCTION workflow.wait()
RETURNS void
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_task_wait';
COMMENT ON FUNCTION workflow.wait() IS
    'from inside an SQL task: when the task ends, park the job as waiting until workflow.resume_job()';

CREATE OR REPLACE FUNCTION workflow.add_info(info jsonb)
RETURNS void
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_task_add_info';
COMMENT ON FUNCTION workflow.add_info(jsonb) IS
    'from inside an SQL task: append progress information to the job, stored with the task outcome';

-- Claim up to p_limit runnable jobs for the in-server runners, in claim
-- order (priority, run_at, id) across the queues that may start jobs now
-- and within each queue's limits (42_queues.sql), with SKIP LOCKED and lock
-- by target.  Returns what the runner reads of each job, with the address
-- of the row version the claim made (src/guard.c reads that first), in no
-- particular order: the runner orders the batch by claim order and starts
-- its jobs in that order (sorting the few columns it reads costs less
-- than sorting the rows here).  A job found past its deadline is claimed
-- too: the runner then handles the timeout.  The claimed rows are updated
-- by their row address (the version locked by the query that chose them,
-- which nothing else can change since).
--
-- A job a crash interrupted is not claimed until the sweeper has settled
-- its crash record (workflow._crash_held(), src/crashrecord.c): its claim
-- may have been lost with the crash.
--
-- Without a row in workflow.queues there is only the default queue,
-- without limits: the batch is then chosen by one query, where a loop
-- would cost more than the rest of the claim.  The candidates' runnable
-- test is written twice, as each query must state the predicate of
-- jobs_runnable_sql literally for its generic plan to use that index.
CREATE OR REPLACE FUNCTION workflow._runner_claim(p_runner text, p_limit integer)
RETURNS TABLE (id bigint, lease bigint, workflow_id bigint, phase workflow.phase, step integer,
               in_fallback boolean, created_by regrole, deadline timestamptz, attempt integer,
               task_attempt integer, priority integer, run_at timestamptz, tid tid)
LANGUAGE plpgsql
-- the plans do not depend on the values: planning them again at every
-- call (custom plans) cost more than the claim itself
SET plan_cache_mode = force_generic_plan
-- a runner keeps its plans until the table's statistics change: a plan
-- made while workflow.jobs was nearly empty (after a TRUNCATE, or at the
-- first claim of a fan-out, before its children exist) must not scan and
-- sort the whole table at every claim once it has grown
SET enable_seqscan = off
-- nor be compiled by JIT: a disabled sequential scan costs 1e10, past
-- jit_above_cost, and a compilation costs a hundred claims
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    cand    record;
    tids    tid[] := '{}';
    taken   text[] := '{}';
    room    jsonb := '{}';
    next_room jsonb;
    -- jobs a crash interrupted, until the sweeper has settled them
    held    bigint[] := workflow._crash_held();
BEGIN
    IF NOT EXISTS (SELECT FROM workflow.queues) THEN
        -- the first jobs in claim order, less those whose target is held;
        -- _take_target is called in claim order (the CTE's), so it also
        -- refuses a second job of a target in this batch
        tids := ARRAY(
            WITH c AS MATERIALIZED (
                SELECT j.ctid AS tid, j.id, j.created_by, j.target
                  FROM workflow.jobs j
                 WHERE j.execution = 'queued' AND j.task_type IS NULL AND j.queue = 'default'
                   AND j.run_at <= now() AND j.id <> ALL (held)
                   AND (j.target IS NULL
                        OR workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at, now()))
                 ORDER BY j.priority DESC, j.run_at, j.id
                 LIMIT p_limit
                   FOR NO KEY UPDATE SKIP LOCKED)
            SELECT c.tid FROM c
             WHERE c.target IS NULL OR workflow._take_target(c.id, c.created_by, c.target));
    ELSE
        FOR cand IN
            SELECT c.*, o.key_room, o.key_limit, o.rated
              FROM workflow._queue_open(p_limit, NULL, NULL) o
             CROSS JOIN LATERAL (
                SELECT j.ctid AS tid, j.id, j.created_by, j.target, j.queue, j.concurrency_key,
                       j.priority, j.run_at
                  FROM workflow.jobs j
                 WHERE j.execution = 'queued' AND j.task_type IS NULL AND j.queue = o.queue
                   AND j.run_at <= now() AND j.id <> ALL (held)
                   AND (o.full_keys IS NULL OR j.concurrency_key IS NULL
                        OR j.concurrency_key <> ALL (o.full_keys))
                   AND (j.target IS NULL
                        OR workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at, now()))
                 ORDER BY j.priority DESC, j.run_at, j.id
                 LIMIT o.budget
                   FOR NO KEY UPDATE SKIP LOCKED) c
             ORDER BY c.priority DESC, c.run_at, c.id
             LIMIT p_limit
        LOOP
            -- at most key_concurrency running per concurrency key
            IF cand.key_limit IS NOT NULL THEN
                next_room := workflow._key_admit(room, cand.queue, cand.concurrency_key,
                                                 cand.key_room, cand.key_limit);
                CONTINUE WHEN next_room IS NULL;
            END IF;
            -- also refuses a second job of the same target in this batch
            CONTINUE WHEN cand.target IS NOT NULL
                      AND NOT workflow._take_target(cand.id, cand.created_by, cand.target);
            IF cand.key_limit IS NOT NULL THEN
                room := next_room;
            END IF;
            tids := tids || cand.tid;
            IF cand.rated THEN
                taken := taken || cand.queue;
            END IF;
        END LOOP;
        IF cardinality(taken) > 0 THEN
            PERFORM workflow._queue_take(taken);
        END IF;
    END IF;
    IF cardinality(tids) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
        UPDATE workflow.jobs j
           SET execution = 'running', runner_id = p_runner,
               lease = workflow._new_lease(), claimed_at = now(),
               started_at = coalesce(j.started_at, now()),
               -- a subquery, not a join: an UPDATE copies every joined
               -- row (for a recheck) and a workflow's row holds its
               -- whole definition
               deadline = coalesce(j.deadline,
                                   now() + (SELECT w.timeout FROM workflow.workflows w
                                             WHERE w.id = j.workflow_id))
         WHERE j.ctid = ANY (tids)
        RETURNING j.id, j.lease, j.workflow_id, j.phase, j.step, j.in_fallback, j.created_by,
                  j.deadline, j.attempt, j.task_attempt, j.priority, j.run_at, j.ctid;
END
$$;
COMMENT ON FUNCTION workflow._runner_claim(text, integer) IS
    'internal: claim a batch of runnable jobs for an in-server runner, the first in claim order (queue limits, SKIP LOCKED, lock by target)';

-- Take over jobs another in-server runner claimed more than p_after ago
-- but has not started: it is busy with a slow task of its batch, and this
-- runner is idle.  Jobs the busy runner already ran in its open batch are
-- locked by it and skipped; p_busy are the jobs whose task runs right now
-- (from shared memory).  The busy runner finds the lease changed when it
-- reaches a taken job and skips it; in the rare race where both run the
-- task, the lease lets only one of them record it, and the other's effects
-- are rolled back.  Only jobs claimed by the live incarnation of a runner
-- (p_live, running since p_since, from shared memory) are taken: the jobs
-- of a runner that died are stale, and the sweeper's.
CREATE OR REPLACE FUNCTION workflow._runner_takeover(p_runner text, p_limit integer, p_busy bigint[],
                                                  p_after interval, p_live text[], p_since timestamptz[])
RETURNS SETOF workflow.jobs
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
        WITH c AS (
            SELECT j.id FROM workflow.jobs j
             WHERE j.execution = 'running' AND j.task_type IS NULL
               AND j.lease_expires_at IS NULL AND j.runner_id <> p_runner
               AND j.claimed_at < clock_timestamp() - p_after
               AND j.id <> ALL (p_busy)
               AND EXISTS (SELECT 1 FROM unnest(p_live, p_since) AS l(id, since)
                            WHERE l.id = j.runner_id AND j.claimed_at >= l.since)
             ORDER BY j.priority DESC, j.claimed_at, j.id
             LIMIT p_limit
               FOR NO KEY UPDATE SKIP LOCKED)
        UPDATE workflow.jobs j
           SET runner_id = p_runner, lease = workflow._new_lease(), claimed_at = now()
          FROM c
         WHERE j.id = c.id
        RETURNING j.*;
END
$$;
COMMENT ON FUNCTION workflow._runner_takeover(text, integer, bigint[], interval, text[], timestamptz[]) IS
    'internal: an idle runner takes over jobs a busy runner claimed but has not started';

-- The job ran out of its whole-job time: the current task fails for good
-- without retries or fallback, the onerror chain runs (itself without a
-- deadline), then whole-job attempts apply.
CREATE OR REPLACE FUNCTION workflow._job_timed_out(j workflow.jobs, started timestamptz)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    cur     workflow.tasks;
    err     jsonb;
BEGIN
    cur := workflow._task_of(j);
    err := jsonb_build_object('task', cur.name, 'phase', j.phase, 'attempt', j.task_attempt,
                              'sqlstate', '57014', 'message', 'job timed out',
                              'detail', format('The job did not finish within its timeout of %s.',
                                               (SELECT w.timeout FROM workflow.workflows w WHERE w.id = j.workflow_id)));
    PERFORM workflow._record_run(j, cur.name, 'failed', started, NULL, err);
    UPDATE workflow.jobs SET error = err, deadline = 'infinity' WHERE id = j.id RETURNING * INTO j;
    RETURN workflow._task_failed_for_good(j, err);
END
$$;
COMMENT ON FUNCTION workflow._job_timed_out(workflow.jobs, timestamptz) IS
    'internal: whole-job timeout: fail the current task for good, then onerror and whole-job attempts';

-- Record the outcome of a task a runner executed, in the transaction of
-- the task itself, guarded by the lease: when the job was canceled, timed
-- out or handed to another runner meanwhile, nothing is recorded and NULL
-- is returned, and the runner rolls the task's effects back.  The job's
-- row lock is waited for at most the runner's lock_timeout (a claim or
-- takeover by another runner takes milliseconds; a role's open transaction
-- may take for ever): then lock_not_available, and the runner hands the
-- job back later instead.
--
-- p_outcome (workflow.outcome; WorkflowOutcome in src/workflow.h), and the
-- edge of the state machine it takes (src/README.md):
--   succeeded  _task_succeeded, keeping a next SQL task claimed
--   failed     _task_failed: retry, fallback, onerror, whole-job retry, failed
--   fatal      _task_failed without retries (the creator cannot log in)
--   requeue    workflow.requeue(): a 'requeued' run, queued at the same task
--   wait       workflow.wait(): a 'waiting' run, waiting until resume_job
--   wait_step  a task that waits reached: a wait task (for resume_job, a
--              signal of its key, p_output, or its timer), or a
--              control-flow entry (_spawn; p_output: the value of its SQL)
--   timeout    _job_timed_out: the whole job's time is up
--   release    handed back (shutdown, cancel of another job): a 'requeued'
--              run, queued at the same task
--   return     handed back untouched, no run recorded: the task did not
--              run, or its effects were rolled back by something else than
--              its own code
CREATE OR REPLACE FUNCTION workflow._runner_record(p_job bigint, p_lease bigint, p_outcome workflow.outcome,
                                                   p_output jsonb, p_error jsonb, p_started timestamptz,
                                                   p_delay interval, p_info jsonb[])
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    j       workflow.jobs;
    cur     workflow.tasks;
    status  text;
BEGIN
    -- "(...) IS TRUE": the same test, in a form that does not match the
    -- predicate of jobs_running, so that the generic plan of this lookup
    -- by id never scans every running job of that index instead
    SELECT * INTO j FROM workflow.jobs
     WHERE id = p_job AND lease = p_lease AND (execution = 'running') IS TRUE
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_outcome = 'return' THEN
        RETURN workflow._enqueue_task(j, j.phase, j.step, j.task_attempt, clock_timestamp(),
                                      j.in_fallback);
    END IF;
    IF p_info IS NOT NULL THEN
        INSERT INTO workflow.job_info (job_id, info) SELECT p_job, i FROM unnest(p_info) i;
    END IF;

    CASE p_outcome
        WHEN 'succeeded' THEN
            RETURN workflow._task_succeeded(j, p_output, p_started, true);
        WHEN 'failed' THEN
            RETURN workflow._task_failed(j, p_error, p_started, true);
        WHEN 'fatal' THEN
            RETURN workflow._task_failed(j, p_error, p_started, false);
        WHEN 'timeout' THEN
            RETURN workflow._job_timed_out(j, p_started);
        WHEN 'wait_step' THEN
            cur := workflow._task_of(j);
            IF cur.kind <> 'wait' THEN
                RETURN workflow._spawn(j, cur, p_output, p_started);
            ELSIF cur.sql IS NOT NULL THEN
                RETURN workflow._wait_signal(j, cur, p_output #>> '{}', p_started);
            END IF;
            UPDATE workflow.jobs
               SET execution = 'waiting', lease = NULL, runner_id = NULL,
                   run_at = CASE WHEN cur.wait_for IS NULL THEN 'infinity'
                                 ELSE clock_timestamp() + cur.wait_for END
             WHERE id = j.id
            RETURNING * INTO j;
            RETURN j;
        WHEN 'requeue', 'wait', 'release' THEN
            cur := workflow._task_of(j);
            status := CASE p_outcome WHEN 'wait' THEN 'waiting' ELSE 'requeued' END;
            PERFORM workflow._record_run(j, cur.name, status, p_started, p_output, p_error);
            IF p_outcome = 'wait' THEN
                UPDATE workflow.jobs
                   SET execution = 'waiting', lease = NULL, runner_id = NULL, run_at = 'infinity'
                 WHERE id = j.id
                RETURNING * INTO j;
                RETURN j;
            END IF;
            RETURN workflow._enqueue_task(j, j.phase, j.step, j.task_attempt,
                                          clock_timestamp() + coalesce(p_delay, interval '0'), j.in_fallback);
        ELSE
            RAISE EXCEPTION 'unknown task outcome "%"', p_outcome
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;
COMMENT ON FUNCTION workflow._runner_record(bigint, bigint, workflow.outcome, jsonb, jsonb, timestamptz, interval, jsonb[]) IS
    'internal: record the outcome of a task executed by a runner, guarded by its lease';
