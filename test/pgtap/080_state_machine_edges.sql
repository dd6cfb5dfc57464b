-- 080_state_machine_edges.sql: every edge of the job state machine, once,
-- as the table "state x event -> next state" of src/README.md ("The job
-- state machine") lists it, through the function that performs the edge
-- (or the public function that calls it); then the illegal edges, each
-- refused with SQLSTATE 55000 (or, for the runners' lease guard, with
-- nothing recorded) and the job left exactly as it was.  Each assertion is
-- named after its edge: "state --event--> next state (function)".
--
-- No background runner runs in the pgTAP cluster (workflow.enabled = off,
-- workflow.runners = 0): this file plays the runners (_runner_claim,
-- _runner_takeover, _runner_record), the external workers (poll_tasks,
-- complete_task, ...), the users (cancel_job, ...) and the sweeper
-- (_sweep).  One transaction: now() is constant; time passing is a
-- backdated run_at, deadline or lease.  Sections that claim whatever is
-- queued, or sweep whatever is due, start from an empty queue
-- (pg_temp.reset).

BEGIN;
SELECT plan(93);

SET LOCAL search_path = public, pg_catalog;

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------

CREATE FUNCTION pg_temp.reset()
RETURNS void LANGUAGE sql AS $$
    DELETE FROM workflow.target_locks;
    DELETE FROM workflow.task_runs;
    DELETE FROM workflow.job_info;
    DELETE FROM workflow.jobs;
    DELETE FROM workflow.runners;
$$;

-- compact state: "execution phase/step aJOB-ATTEMPT tTASK-ATTEMPT [fallback]"
CREATE FUNCTION pg_temp.st(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s/%s a%s t%s%s', execution, phase, step, attempt, task_attempt,
                  CASE WHEN in_fallback THEN ' fallback' ELSE '' END)
      FROM workflow.jobs WHERE id = p_id
$$;

-- the status of the last task run of a job, or 'none'
CREATE FUNCTION pg_temp.last_run(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT status FROM workflow.task_runs WHERE job_id = p_id
                      ORDER BY id DESC LIMIT 1), 'none')
$$;

-- run_job as runner p_runner: the lease of the claim, NULL if not claimed
-- (a retry's backoff or a requeue's delay has passed first: run_at is
-- moved back to now())
CREATE FUNCTION pg_temp.claim(p_id bigint, p_runner text DEFAULT 'r1')
RETURNS bigint LANGUAGE sql AS $$
    UPDATE workflow.jobs SET run_at = now() WHERE id = p_id AND execution = 'queued' AND run_at > now();
    SELECT r.lease FROM workflow.run_job(p_id, p_runner) r
$$;

-- what an in-server runner reports for the running job (its current lease)
CREATE FUNCTION pg_temp.rec(p_id bigint, p_outcome workflow.outcome, p_output jsonb DEFAULT NULL,
                            p_error jsonb DEFAULT NULL, p_delay interval DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM workflow._runner_record(p_id, (SELECT lease FROM workflow.jobs WHERE id = p_id),
                                        p_outcome, p_output, p_error, now(), p_delay, NULL)
$$;

-- claim (run_job) and report an outcome as a runner: the job's state after
CREATE FUNCTION pg_temp.run(p_id bigint, p_outcome workflow.outcome, p_output jsonb DEFAULT NULL,
                            p_error jsonb DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF pg_temp.claim(p_id) IS NULL THEN
        RAISE EXCEPTION 'job % could not be claimed: %', p_id, pg_temp.st(p_id);
    END IF;
    PERFORM pg_temp.rec(p_id, p_outcome, p_output, p_error);
    RETURN pg_temp.st(p_id);
END
$$;

-- everything about a job: its row and its task runs
CREATE FUNCTION pg_temp.snap(p_id bigint)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('job', (SELECT to_jsonb(j) FROM workflow.jobs j WHERE j.id = p_id),
                              'runs', (SELECT count(*) FROM workflow.task_runs r WHERE r.job_id = p_id))
$$;

-- run p_sql against job p_id: its SQLSTATE (or "ok") and whether the job
-- and its runs are unchanged afterwards
CREATE FUNCTION pg_temp.refused(p_id bigint, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    before  jsonb := pg_temp.snap(p_id);
    state   text;
BEGIN
    BEGIN
        EXECUTE p_sql;
        state := 'ok';
    EXCEPTION WHEN OTHERS THEN
        state := SQLSTATE;
    END;
    RETURN state || CASE WHEN pg_temp.snap(p_id) = before THEN ', job unchanged' ELSE ', job CHANGED' END;
END
$$;

-------------------------------------------------------------------------------
-- Workflows (setup, output not shown)
-------------------------------------------------------------------------------

\o /dev/null
SELECT workflow.create_workflow('{"name": "e_one", "chain": [{"name": "a", "sql": "select 1"}],
                                  "on_stale": "cancel"}');
SELECT workflow.create_workflow('{"name": "e_two", "chain": [{"name": "a", "sql": "select 1"},
                                                             {"name": "b", "sql": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "e_mixed", "chain": [{"name": "a", "sql": "select 1"},
                                                               {"name": "pay", "task_type": "e.pay"},
                                                               {"name": "z", "sql": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "e_ext", "chain": [{"name": "pay", "task_type": "e.ext",
                                                              "attempts": 2, "delay": 0}]}');
SELECT workflow.create_workflow('{"name": "e_retry", "chain": [{"name": "a", "sql": "select 1",
                                                                "attempts": 2, "delay": 0}],
                                  "on_stale": "retry"}');
SELECT workflow.create_workflow('{"name": "e_fallback", "chain": [{"name": "a", "sql": "select 1",
                                                                   "fallback": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "e_onerror", "chain": [{"name": "a", "sql": "select 1"}],
                                  "onerror": [{"name": "e", "sql": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "e_onerror2", "chain": [{"name": "a", "sql": "select 1"}],
                                  "onerror": [{"name": "e", "sql": "select 2"}],
                                  "max_attempts": 2, "initial_delay": 0}');
SELECT workflow.create_workflow('{"name": "e_whole", "chain": [{"name": "a", "sql": "select 1"}],
                                  "max_attempts": 2, "initial_delay": 0}');
SELECT workflow.create_workflow('{"name": "e_cancel", "chain": [{"name": "a", "sql": "select 1"}],
                                  "oncancel": [{"name": "c", "sql": "select 2"}],
                                  "on_stale": "cancel"}');
SELECT workflow.create_workflow('{"name": "e_signal", "chain": [{"name": "w", "wait": "signal"},
                                                                {"name": "after", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "e_timer", "chain": [{"name": "w", "wait": "1 min"},
                                                               {"name": "after", "sql": "select 1"}]}');
\o

-------------------------------------------------------------------------------
-- The outcomes a runner reports are the labels of workflow.outcome
-- (WorkflowOutcome and WorkflowOutcomeNames[] in C, in the same order)
-------------------------------------------------------------------------------

SELECT is(enum_range(NULL::workflow.outcome)::text[],
          '{succeeded,failed,fatal,requeue,wait,wait_step,timeout,release,return}'::text[],
          'workflow.outcome: the labels of WorkflowOutcome, in its order');

-------------------------------------------------------------------------------
-- Claims: queued --claim--> running, and takeover
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_two') AS j \gset
SELECT string_agg(id::text, ',') AS claimed FROM workflow._runner_claim('runner-1', 10) \gset
SELECT is((SELECT string_agg(id::text || ' ' || execution || ' ' || runner_id, ',')
             FROM workflow.jobs WHERE id IN (:claimed)),
          :j || ' running runner-1', 'queued --claim (runner)--> running (_runner_claim)');
SELECT is((SELECT string_agg(id::text || ' ' || execution || ' ' || runner_id, ',')
             FROM workflow._runner_takeover('runner-2', 10, '{}', '0', '{runner-1}', ARRAY[now() - interval '1 hour'])),
          :j || ' running runner-2', 'running --takeover--> running under another runner (_runner_takeover)');

-- without a queue with limits the claim is one query: it still takes one
-- job of a target per batch, the first in claim order
SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_two', target => 'shared') AS t1 \gset
SELECT workflow.create_job('e_two', target => 'shared') AS t2 \gset
SELECT workflow.create_job('e_two') AS t3 \gset
SELECT is((SELECT string_agg(id::text, ',' ORDER BY id) FROM workflow._runner_claim('runner-1', 10)),
          :t1 || ',' || :t3, 'queued --claim (runner)--> running: one job of a target per batch');
SELECT is((SELECT count(*) FROM workflow._runner_claim('runner-1', 10)), 0::bigint,
          'queued --claim (runner)--> running: not while the target is held by the running job');

SELECT workflow.create_job('e_ext') AS j \gset
SELECT is((SELECT t.job_id FROM workflow.poll_tasks('e.ext', 'w1') t), :j::bigint,
          'queued --claim (poll_tasks)--> running ... the task is handed out');
SELECT is(pg_temp.st(:j) || ' ' || (SELECT runner_id FROM workflow.jobs WHERE id = :j)
                         || ' ' || ((SELECT lease_expires_at FROM workflow.jobs WHERE id = :j) IS NOT NULL),
          'running chain/0 a1 t1 w1 true', 'queued --claim (poll_tasks)--> running with a lease that expires (_claim_tasks)');

SELECT workflow.create_job('e_one') AS j \gset
SELECT isnt(pg_temp.claim(:j, 'r1'), NULL, 'queued --claim (run_job)--> running: a lease');
SELECT is(pg_temp.st(:j) || ' ' || (SELECT runner_id FROM workflow.jobs WHERE id = :j),
          'running chain/0 a1 t1 r1', 'queued --claim (run_job)--> running under the runner (_run_job)');

-------------------------------------------------------------------------------
-- Task succeeded
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_two') AS j \gset
SELECT pg_temp.claim(:j) AS lease \gset
SELECT pg_temp.rec(:j, 'succeeded', '"a"') \gset
SELECT is(pg_temp.st(:j) || ' ' || ((SELECT lease FROM workflow.jobs WHERE id = :j) = :lease),
          'running chain/1 a1 t1 true',
          'running --task succeeded, next task same executor--> running at the next task, same claim (_task_succeeded, keep_running)');
SELECT pg_temp.rec(:j, 'succeeded', '"b"') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :j)::text,
          'succeeded chain/1 a1 t1 "b"', 'running --task succeeded, end of chain--> succeeded (_task_succeeded)');

SELECT workflow.create_job('e_mixed') AS j \gset
SELECT pg_temp.run(:j, 'succeeded') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT task_type FROM workflow.jobs WHERE id = :j),
          'queued chain/1 a1 t1 e.pay',
          'running --task succeeded, next task other executor--> queued at the next task, in its queue (_task_succeeded)');
SELECT lease AS lease FROM workflow.poll_tasks('e.pay', 'w1') \gset
SELECT ok(workflow.complete_task(:j, :lease, '"paid"'), 'complete_task records the external task');
SELECT is(pg_temp.st(:j) || ' ' || coalesce((SELECT task_type FROM workflow.jobs WHERE id = :j), 'runners'),
          'queued chain/2 a1 t1 runners',
          'running --task succeeded, next task other executor--> queued (complete_task)');
SELECT pg_temp.run(:j, 'succeeded', '"z"') \gset
SELECT is(pg_temp.st(:j), 'succeeded chain/2 a1 t1',
          'running --task succeeded, end of chain--> succeeded (_runner_record succeeded)');

SELECT workflow.create_job('e_ext') AS j \gset
SELECT lease AS lease FROM workflow.poll_tasks('e.ext', 'w1') \gset
SELECT ok(workflow.complete_task(:j, :lease, '"paid"'), 'complete_task: the last task');
SELECT is(pg_temp.st(:j) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :j)::text,
          'succeeded chain/0 a1 t1 "paid"', 'running --task succeeded, end of chain--> succeeded (complete_task)');

SELECT workflow.create_job('e_onerror2') AS j \gset
SELECT pg_temp.run(:j, 'fatal', NULL, '{"message": "boom"}') \gset
SELECT pg_temp.run(:j, 'succeeded') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a2 t1',
          'running --task succeeded, end of onerror, job attempts left--> queued at the chain''s start (_job_failed)');
SELECT workflow.create_job('e_onerror') AS j \gset
SELECT pg_temp.run(:j, 'fatal', NULL, '{"message": "boom"}') \gset
SELECT pg_temp.run(:j, 'succeeded') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT error ->> 'message' FROM workflow.jobs WHERE id = :j),
          'failed onerror/0 a1 t1 boom',
          'running --task succeeded, end of onerror, no attempts left--> failed with the chain''s error (_job_failed)');

SELECT workflow.create_job('e_cancel') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT pg_temp.run(:j, 'succeeded') \gset
SELECT is(pg_temp.st(:j), 'canceled oncancel/0 a1 t1',
          'running --task succeeded, end of oncancel--> canceled (_task_succeeded)');

-------------------------------------------------------------------------------
-- Task failed
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_retry') AS j \gset
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j),
          'queued chain/0 a1 t2 failed', 'running --task failed, attempts left--> queued (retry) (_task_failed)');
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t2',
          'running --task failed, no attempts left, no fallback, no onerror, no job attempts--> failed (_task_failed)');

SELECT workflow.create_job('e_retry') AS j \gset
SELECT pg_temp.run(:j, 'fatal', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t1',
          'running --task failed, not retryable (fatal)--> failed, attempts left unused (_task_failed)');

SELECT workflow.create_job('e_retry') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT pg_temp.rec(:j, 'failed', NULL, '{"sqlstate": "57014", "message": "canceling statement due to statement timeout"}') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t2',
          'running --task timeout (the body''s statement timeout)--> queued (retry), as any failure (_task_failed)');

SELECT workflow.create_job('e_fallback') AS j \gset
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j) || ' ' || coalesce((SELECT task_type FROM workflow.jobs WHERE id = :j), 'runners'),
          'queued chain/0 a1 t1 fallback runners',
          'running --task failed, fallback--> queued at its fallback, for the runners (_task_failed)');
SELECT pg_temp.run(:j, 'succeeded') \gset
SELECT is(pg_temp.st(:j), 'succeeded chain/0 a1 t1',
          'running (fallback) --task succeeded, end of chain--> succeeded (_task_succeeded)');

SELECT workflow.create_job('e_onerror') AS j \gset
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j), 'queued onerror/0 a1 t1',
          'running --task failed, onerror--> queued at the onerror chain (_task_failed)');
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "y"}') \gset
SELECT is(pg_temp.st(:j), 'failed onerror/0 a1 t1',
          'running (onerror) --task failed, no job attempts--> failed (_task_failed, _job_failed)');

SELECT workflow.create_job('e_whole') AS j \gset
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a2 t1',
          'running --task failed, no onerror, job attempts left--> queued (whole-job retry) (_job_failed)');

SELECT workflow.create_job('e_cancel') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT pg_temp.run(:j, 'failed', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.st(:j), 'canceled oncancel/0 a1 t1',
          'running (oncancel) --task failed--> canceled (_task_failed)');

SELECT workflow.create_job('e_ext') AS j \gset
SELECT lease AS lease FROM workflow.poll_tasks('e.ext', 'w1') \gset
SELECT ok(workflow.fail_task(:j, :lease, 'declined'), 'fail_task records the failure');
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t2', 'running --task failed, attempts left--> queued (retry) (fail_task)');

-------------------------------------------------------------------------------
-- Requeue and hand-back: running --> queued at the same task, no attempt
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT pg_temp.rec(:j, 'requeue', NULL, NULL, '1 hour') \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j) || ' '
                         || ((SELECT run_at FROM workflow.jobs WHERE id = :j) > now() + interval '59 min'),
          'queued chain/0 a1 t1 requeued true',
          'running --requeue (workflow.requeue())--> queued at the same task after the delay (_runner_record requeue)');

SELECT workflow.create_job('e_ext') AS j \gset
SELECT lease AS lease FROM workflow.poll_tasks('e.ext', 'w1') \gset
SELECT ok(workflow.requeue_task(:j, :lease, '0'), 'requeue_task hands the task back');
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j), 'queued chain/0 a1 t1 requeued',
          'running --requeue (requeue_task)--> queued at the same task (_requeue_task)');

SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.run(:j, 'release') \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j), 'queued chain/0 a1 t1 requeued',
          'running --release (shutdown, locked row)--> queued at the same task, a requeued run (_runner_record release)');

SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.run(:j, 'return') \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j), 'queued chain/0 a1 t1 none',
          'running --return (batch error, exit)--> queued at the same task, no run recorded (_runner_record return)');

-------------------------------------------------------------------------------
-- Waiting, resume, timers
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.run(:j, 'wait') \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j) || ' '
                                   || (SELECT run_at FROM workflow.jobs WHERE id = :j),
          'waiting chain/0 a1 t1 waiting infinity',
          'running --wait (workflow.wait())--> waiting for resume_job (_runner_record wait)');
SELECT ok(workflow.resume_job(:j, '"resumed"'), 'resume_job: the waiting job resumes');
SELECT is(pg_temp.st(:j) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :j)::text,
          'succeeded chain/0 a1 t1 "resumed"', 'waiting --resume (result)--> succeeded at the end of the chain (_resume_job, _task_succeeded)');

SELECT workflow.create_job('e_signal') AS j \gset
SELECT pg_temp.run(:j, 'wait_step') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT run_at FROM workflow.jobs WHERE id = :j),
          'waiting chain/0 a1 t1 infinity',
          'running --wait task reached (signal)--> waiting (_runner_record wait_step)');
SELECT ok(workflow.resume_job(:j, '"sig"'), 'resume_job: the signal arrives');
SELECT is(pg_temp.st(:j), 'queued chain/1 a1 t1', 'waiting --resume (result)--> queued at the next task (_resume_job, _task_succeeded)');

SELECT workflow.create_job('e_retry') AS j \gset
SELECT pg_temp.run(:j, 'wait') \gset
SELECT ok(workflow.resume_job(:j, NULL, 'refused'), 'resume_job with an error');
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t2', 'waiting --resume (error), attempts left--> queued (retry) (_resume_job, _task_failed)');

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_timer') AS j \gset
SELECT pg_temp.run(:j, 'wait_step') \gset
SELECT is(pg_temp.st(:j) || ' '
          || ((SELECT run_at FROM workflow.jobs WHERE id = :j) BETWEEN now() + interval '59 s' AND clock_timestamp() + interval '1 min'),
          'waiting chain/0 a1 t1 true', 'running --wait task reached (timer)--> waiting until the timer (_runner_record wait_step)');
UPDATE workflow.jobs SET run_at = now() - interval '1 second' WHERE id = :j;
SELECT workflow._sweep('cancel', '0', 100) \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j), 'queued chain/1 a1 t1 succeeded',
          'waiting --timer elapsed--> queued at the next task (_sweep, _task_succeeded)');

-------------------------------------------------------------------------------
-- Cancel
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_one') AS j \gset
SELECT ok(workflow.cancel_job(:j, 'no'), 'cancel_job of a queued job');
SELECT is(pg_temp.st(:j) || ' ' || (SELECT error ->> 'reason' FROM workflow.jobs WHERE id = :j),
          'canceled chain/0 a1 t1 no', 'queued --cancel, no oncancel--> canceled (_cancel_job)');
SELECT workflow.create_job('e_cancel') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.st(:j), 'queued oncancel/0 a1 t1', 'queued --cancel, oncancel--> queued at the oncancel chain (_cancel_job)');

SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.st(:j) || ' ' || coalesce((SELECT lease::text FROM workflow.jobs WHERE id = :j), 'no lease'),
          'canceled chain/0 a1 t1 no lease', 'running --cancel, no oncancel--> canceled, the lease void (_cancel_job)');
SELECT workflow.create_job('e_cancel') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.st(:j), 'queued oncancel/0 a1 t1', 'running --cancel, oncancel--> queued at the oncancel chain (_cancel_job)');

SELECT workflow.create_job('e_signal') AS j \gset
SELECT pg_temp.run(:j, 'wait_step') \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.st(:j), 'canceled chain/0 a1 t1', 'waiting --cancel, no oncancel--> canceled (_cancel_job)');
SELECT workflow.create_workflow('{"name": "e_signal_c", "chain": [{"name": "w", "wait": "signal"}],
                                  "oncancel": [{"name": "c", "sql": "select 1"}]}') \gset
SELECT workflow.create_job('e_signal_c') AS j \gset
SELECT pg_temp.run(:j, 'wait_step') \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.st(:j), 'queued oncancel/0 a1 t1', 'waiting --cancel, oncancel--> queued at the oncancel chain (_cancel_job)');

-------------------------------------------------------------------------------
-- Whole-job timeout
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_onerror') AS j \gset
SELECT pg_temp.run(:j, 'timeout') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT error ->> 'message' FROM workflow.jobs WHERE id = :j),
          'queued onerror/0 a1 t1 job timed out',
          'running --job timeout, onerror--> queued at the onerror chain (_runner_record timeout, _job_timed_out)');
SELECT workflow.create_job('e_whole') AS j \gset
SELECT pg_temp.run(:j, 'timeout') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a2 t1',
          'running --job timeout, no onerror, job attempts left--> queued (whole-job retry) (_job_timed_out)');
SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.run(:j, 'timeout') \gset
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t1',
          'running --job timeout, no onerror, no job attempts--> failed (_job_timed_out)');

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_signal') AS j \gset
SELECT pg_temp.run(:j, 'wait_step') \gset
UPDATE workflow.jobs SET deadline = now() - interval '1 second' WHERE id = :j;
SELECT workflow._sweep('cancel', '0', 100) \gset
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t1', 'waiting --job timeout--> failed (_sweep, _job_timed_out)');
SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j) \gset
UPDATE workflow.jobs SET deadline = now() - interval '1 second' WHERE id = :j;
SELECT workflow._sweep('cancel', '0', 100) \gset
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t1', 'running --job timeout--> failed (_sweep, _job_timed_out)');

-------------------------------------------------------------------------------
-- Lease expired, stale runners (the sweeper)
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_ext') AS j \gset
SELECT lease AS lease FROM workflow.poll_tasks('e.ext', 'w1') \gset
UPDATE workflow.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :j;
SELECT workflow._sweep('cancel', '0', 100) \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j), 'queued chain/0 a1 t2 failed',
          'running --lease expired, attempts left--> queued (retry) (_sweep, _task_failed)');

-- runners that stopped reporting: backdated beyond workflow.stale_after
CREATE FUNCTION pg_temp.go_stale(p_id bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE workflow.runners SET active_at = now() - interval '1 day'
     WHERE id = (SELECT runner_id FROM workflow.jobs WHERE id = p_id)
$$;

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_retry') AS j \gset
SELECT pg_temp.claim(:j, 'r-dead') \gset
SELECT pg_temp.go_stale(:j) \gset
SELECT workflow._sweep('cancel', '0', 100) \gset
SELECT is(pg_temp.st(:j) || ' ' || pg_temp.last_run(:j), 'queued chain/0 a1 t2 failed',
          'running --stale runner, on_stale retry--> queued at the same task (_sweep)');

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j, 'r-dead') \gset
SELECT pg_temp.go_stale(:j) \gset
SELECT workflow._sweep('retry', '0', 100) \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT error ->> 'stale' FROM workflow.jobs WHERE id = :j),
          'canceled chain/0 a1 t1 true', 'running --stale runner, on_stale cancel, no oncancel--> canceled (_sweep)');

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('e_cancel') AS j \gset
SELECT pg_temp.claim(:j, 'r-dead') \gset
SELECT pg_temp.go_stale(:j) \gset
SELECT workflow._sweep('retry', '0', 100) \gset
SELECT is(pg_temp.st(:j), 'queued oncancel/0 a1 t1',
          'running --stale runner, on_stale cancel, oncancel--> queued at the oncancel chain (_sweep)');

-------------------------------------------------------------------------------
-- retry_job, finish_job
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_two') AS j \gset
SELECT pg_temp.run(:j, 'succeeded') \gset
SELECT pg_temp.rec(:j, 'fatal', NULL, '{"message": "x"}') \gset
SELECT ok(workflow.retry_job(:j), 'retry_job of a failed job');
SELECT is(pg_temp.st(:j), 'queued chain/1 a1 t1', 'failed --retry_job--> queued at the first task without a success (_retry_job)');
SELECT workflow.create_job('e_one') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT workflow.retry_job(:j) \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t1', 'canceled --retry_job--> queued (_retry_job)');

SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT is((SELECT execution::text FROM workflow.finish_job(:j, 'r1', 'succeeded', '"done"')), 'succeeded',
          'running --finish_job succeeded--> succeeded (_finish_job)');
SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT is((SELECT execution::text FROM workflow.finish_job(:j, 'r1', 'failed')), 'failed',
          'running --finish_job failed--> failed (_finish_job)');
SELECT workflow.create_job('e_cancel') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT pg_temp.claim(:j) \gset
SELECT is((SELECT execution::text FROM workflow.finish_job(:j, 'r1', 'succeeded')), 'canceled',
          'running (oncancel) --finish_job--> canceled, whatever the runner says (_finish_job)');

SELECT workflow.create_job('e_onerror') AS j \gset
SELECT pg_temp.run(:j, 'fatal', NULL, '{"message": "x"}') \gset
SELECT pg_temp.claim(:j) \gset
SELECT is((SELECT execution::text FROM workflow.finish_job(:j, 'r1', 'succeeded')), 'failed',
          'running (onerror) --finish_job succeeded--> failed: an onerror chain cannot succeed (_finish_job)');

-------------------------------------------------------------------------------
-- Events that change nothing: answered, not refused
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_one') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.refused(:j, format('SELECT workflow.cancel_job(%s)', :j)), 'ok, job unchanged',
          'canceled --cancel--> canceled, unchanged (cancel_job returns false)');
SELECT workflow.create_job('e_cancel') AS j \gset
SELECT workflow.cancel_job(:j) \gset
SELECT is(pg_temp.refused(:j, format('SELECT workflow.cancel_job(%s)', :j)), 'ok, job unchanged',
          'queued (oncancel) --cancel--> unchanged, already being canceled (cancel_job returns false)');
SELECT workflow.create_job('e_one') AS j \gset
SELECT pg_temp.claim(:j) \gset
SELECT is(pg_temp.refused(:j, format('SELECT workflow.run_job(%s, %L)', :j, 'r2')), 'ok, job unchanged',
          'running --claim (run_job)--> unchanged, NULL: not queued');
SELECT workflow.finish_job(:j, 'r1', 'succeeded', '"done"') \gset
SELECT is(pg_temp.refused(:j, format('SELECT workflow.finish_job(%s, %L, %L, %L)', :j, 'r1', 'succeeded', '"done"')),
          'ok, job unchanged', 'succeeded --finish_job, the same call again--> succeeded, unchanged (_finish_job)');

-------------------------------------------------------------------------------
-- Illegal edges: refused (55000), the job unchanged
-------------------------------------------------------------------------------

SELECT workflow.create_job('e_one') AS q \gset
SELECT is(pg_temp.refused(:q, format('SELECT workflow.resume_job(%s, %L)', :q, '"x"')), '55000, job unchanged',
          'queued --resume--> refused (only a waiting job resumes)');
SELECT is(pg_temp.refused(:q, format('SELECT workflow.retry_job(%s)', :q)), '55000, job unchanged',
          'queued --retry_job--> refused');
SELECT is(pg_temp.refused(:q, format('SELECT workflow.finish_job(%s, %L, %L)', :q, 'r1', 'succeeded')), '55000, job unchanged',
          'queued --finish_job--> refused (not running for that runner)');
SELECT is(pg_temp.refused(:q, format('SELECT workflow._task_succeeded(j, NULL, now()) FROM workflow.jobs j WHERE id = %s FOR UPDATE', :q)),
          '55000, job unchanged', 'queued --task succeeded--> refused (no task in progress)');

SELECT workflow.create_job('e_two') AS r \gset
SELECT pg_temp.claim(:r) AS rlease \gset
SELECT is(pg_temp.refused(:r, format('SELECT workflow.retry_job(%s)', :r)), '55000, job unchanged',
          'running --retry_job--> refused');
SELECT is(pg_temp.refused(:r, format('SELECT workflow.resume_job(%s)', :r)), '55000, job unchanged',
          'running --resume--> refused');
SELECT is(pg_temp.refused(:r, format('SELECT workflow.finish_job(%s, %L, %L)', :r, 'r2', 'succeeded')), '55000, job unchanged',
          'running --finish_job by another runner--> refused');

SELECT workflow.create_job('e_signal') AS w \gset
SELECT pg_temp.run(:w, 'wait_step') \gset
SELECT is(pg_temp.refused(:w, format('SELECT workflow.finish_job(%s, %L, %L)', :w, 'r1', 'succeeded')), '55000, job unchanged',
          'waiting --finish_job--> refused');
SELECT is(pg_temp.refused(:w, format('SELECT workflow.retry_job(%s)', :w)), '55000, job unchanged',
          'waiting --retry_job--> refused');

SELECT workflow.create_job('e_one') AS s \gset
SELECT pg_temp.run(:s, 'succeeded') \gset
SELECT is(pg_temp.refused(:s, format('SELECT workflow.cancel_job(%s)', :s)), '55000, job unchanged',
          'succeeded --cancel--> refused');
SELECT is(pg_temp.refused(:s, format('SELECT workflow.retry_job(%s)', :s)), '55000, job unchanged',
          'succeeded --retry_job--> refused');
SELECT is(pg_temp.refused(:s, format('SELECT workflow.resume_job(%s)', :s)), '55000, job unchanged',
          'succeeded --resume--> refused');
SELECT workflow.create_job('e_one') AS f \gset
SELECT pg_temp.run(:f, 'fatal', NULL, '{"message": "x"}') \gset
SELECT is(pg_temp.refused(:f, format('SELECT workflow.cancel_job(%s)', :f)), '55000, job unchanged',
          'failed --cancel--> refused');

-- stale leases: the job was handed out again under a new lease
SELECT workflow.create_workflow('{"name": "e_late", "chain": [{"name": "pay", "task_type": "e.late"}]}') \gset
SELECT workflow.create_job('e_late') AS x \gset
SELECT lease AS old FROM workflow.poll_tasks('e.late', 'w1') \gset
SELECT workflow.requeue_task(:x, :old, '0') \gset
SELECT lease AS new FROM workflow.poll_tasks('e.late', 'w2') \gset
SELECT is(pg_temp.refused(:x, format('SELECT workflow.complete_task(%s, %s, %L)', :x, :old, '"late"')), '55000, job unchanged',
          'running --complete_task with a stale lease--> refused');
SELECT is(pg_temp.refused(:x, format('SELECT workflow.fail_task(%s, %s, %L)', :x, :old, 'late')), '55000, job unchanged',
          'running --fail_task with a stale lease--> refused');
SELECT is(pg_temp.refused(:x, format('SELECT workflow.extend_task(%s, %s)', :x, :old)), '55000, job unchanged',
          'running --extend_task with a stale lease--> refused');
SELECT is(pg_temp.refused(:x, format('SELECT workflow._runner_record(%s, %s, %L, NULL, NULL, now(), NULL, NULL)', :x, :old, 'succeeded')),
          'ok, job unchanged', 'running --runner outcome with a stale lease--> nothing recorded (_runner_record guard)');

-- complete_task of a job at its SQL task
SELECT is(pg_temp.refused(:q, format('SELECT workflow.complete_task(%s, %s, %L)', :q, :rlease, '"x"')), '55000, job unchanged',
          'queued (SQL task) --complete_task--> refused');
SELECT is(pg_temp.refused(:r, format('SELECT workflow.complete_task(%s, %s, %L)', :r, :rlease, '"x"')), '55000, job unchanged',
          'running (SQL task, run_job) --complete_task--> refused');

SELECT * FROM finish();
ROLLBACK;
