-- 010_state_machine.sql: the job state machine, driven through the internal
-- transition functions exactly as an executor does it: claim a job with
-- workflow.run_job(id, runner), then record the outcome of its current task
-- on the locked row with workflow._task_succeeded() / workflow._task_failed().
--
-- No background runner runs in the pgTAP cluster (workflow.runners = 0), so
-- nothing moves unless this file moves it.  The whole file is one
-- transaction: now() is constant while delays count from the clock, so a
-- backoff is checked as date_trunc('second', run_at - now()); "time passing" is simulated by moving run_at of a
-- queued job back to now() (pg_temp.due).

BEGIN;
SELECT plan(107);

SET LOCAL search_path = public, pg_catalog;

-------------------------------------------------------------------------------
-- Executor helpers (what a runner does, one call each)
-------------------------------------------------------------------------------

-- claim: run_job as runner p_runner; the execution of the claimed row, NULL if not claimed
CREATE FUNCTION pg_temp.claim(p_id bigint, p_runner text DEFAULT 'r1')
RETURNS text LANGUAGE sql AS $$
    SELECT r.execution::text FROM workflow.run_job(p_id, p_runner) r
$$;

-- the current task of the locked job succeeded with p_out
CREATE FUNCTION pg_temp.succeed(p_id bigint, p_out jsonb, p_keep boolean DEFAULT false)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM (SELECT workflow._task_succeeded(j, p_out, now(), p_keep)
                   FROM workflow.jobs j WHERE j.id = p_id FOR UPDATE) s
$$;

-- the current task of the locked job failed with message p_msg
CREATE FUNCTION pg_temp.fail(p_id bigint, p_msg text, p_retryable boolean DEFAULT true)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM (SELECT workflow._task_failed(j, jsonb_build_object('message', p_msg), now(), p_retryable)
                   FROM workflow.jobs j WHERE j.id = p_id FOR UPDATE) s
$$;

-- claim as runner r1 (which must work), then the task succeeds / fails
CREATE FUNCTION pg_temp.run_ok(p_id bigint, p_out jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_temp.claim(p_id) IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'job % could not be claimed: %', p_id, pg_temp.st(p_id);
    END IF;
    PERFORM pg_temp.succeed(p_id, p_out);
END
$$;
CREATE FUNCTION pg_temp.run_fail(p_id bigint, p_msg text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_temp.claim(p_id) IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'job % could not be claimed: %', p_id, pg_temp.st(p_id);
    END IF;
    PERFORM pg_temp.fail(p_id, p_msg);
END
$$;

-- run a statement; its SQLSTATE, or 'ok'
CREATE FUNCTION pg_temp.try(p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- time passes: a queued job's not-before time is reached
CREATE FUNCTION pg_temp.due(p_id bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE workflow.jobs SET run_at = now() WHERE id = p_id AND execution = 'queued'
$$;

-- compact state: "execution phase/step job-attempt/task-attempt"
CREATE FUNCTION pg_temp.st(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s/%s a%s t%s%s', execution, phase, step, attempt, task_attempt,
                  CASE WHEN in_fallback THEN ' fallback' ELSE '' END)
      FROM workflow.jobs WHERE id = p_id
$$;

-- one more failed attempt after the backoff: wait, claim, fail; the
-- backoff chosen for the next attempt (date_trunc('second', run_at - now())), NULL when the job
-- did not go back to the queue
CREATE FUNCTION pg_temp.fail_again(p_id bigint)
RETURNS interval LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_temp.due(p_id);
    PERFORM pg_temp.run_fail(p_id, 'again');
    RETURN (SELECT CASE WHEN execution = 'queued' THEN date_trunc('second', run_at - now()) END
              FROM workflow.jobs WHERE id = p_id);
END
$$;

-------------------------------------------------------------------------------
-- Workflows (setup, output not shown)
-------------------------------------------------------------------------------

\o /dev/null

SELECT workflow.create_workflow('{"name": "sm_chain3", "chain": [
    {"name": "a", "sql": "select 1"},
    {"name": "b", "sql": "select 2"},
    {"name": "c", "sql": "select 3"}]}');
SELECT workflow.create_workflow('{"name": "sm_fixed", "chain": [
    {"name": "t", "sql": "select 1", "attempts": 3, "backoff": "fixed", "delay": "5 s"}]}');
SELECT workflow.create_workflow('{"name": "sm_linear", "chain": [
    {"name": "t", "sql": "select 1", "attempts": 4, "backoff": "linear", "delay": "2 s"}]}');
SELECT workflow.create_workflow('{"name": "sm_exp", "chain": [
    {"name": "t", "sql": "select 1", "attempts": 5, "backoff": "exponential", "delay": 1, "max_delay": "3 s"}]}');
SELECT workflow.create_workflow('{"name": "sm_fallback", "chain": [
    {"name": "a", "sql": "select 1", "attempts": 2, "fallback": "select 2"},
    {"name": "b", "sql": "select 3"}],
  "onerror": [{"name": "e", "sql": "select 4"}]}');
SELECT workflow.create_workflow('{"name": "sm_ext_fallback", "chain": [
    {"name": "pay", "task_type": "payment", "fallback": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "sm_onerror", "chain": [
    {"name": "a", "sql": "select 1"},
    {"name": "b", "sql": "select 2"}],
  "onerror": [{"name": "e1", "sql": "select 3"}, {"name": "e2", "sql": "select 4"}]}');
SELECT workflow.create_workflow('{"name": "sm_whole", "chain": [
    {"name": "a", "sql": "select 1"},
    {"name": "b", "sql": "select 2"}],
  "max_attempts": 3, "initial_delay": "10 s", "max_delay": "15 s"}');
SELECT workflow.create_workflow('{"name": "sm_cancel", "chain": [
    {"name": "a", "sql": "select 1"}],
  "oncancel": [{"name": "c1", "sql": "select 2"}, {"name": "c2", "sql": "select 3"}]}');
SELECT workflow.create_workflow('{"name": "sm_noretry", "chain": [
    {"name": "a", "sql": "select 1", "attempts": 5}]}');
SELECT workflow.create_workflow('{"name": "sm_ext", "chain": [
    {"name": "a", "sql": "select 1"},
    {"name": "pay", "task_type": "payment"},
    {"name": "z", "sql": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "sm_ext_first", "chain": [
    {"name": "pay", "task_type": "payment"}]}');
SELECT workflow.create_workflow('{"name": "sm_keep", "chain": [
    {"name": "a", "sql": "select 1"},
    {"name": "b", "sql": "select 2"},
    {"name": "pay", "task_type": "payment"}]}');
\o

-------------------------------------------------------------------------------
-- A 3-task chain advances step by step and succeeds with the last output
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_chain3', '{"n": 1}') AS j \gset

SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t1', 'chain: a new job is queued at the first task');
SELECT is(pg_temp.claim(:j), 'running', 'chain: run_job claims it');
SELECT is((SELECT runner_id FROM workflow.jobs WHERE id = :j), 'r1', 'chain: the claim records the runner');
SELECT is(workflow.job_context(j) -> 'results', '{}'::jsonb, 'chain: no results before the first task')
  FROM workflow.jobs j WHERE id = :j;
SELECT is(workflow.job_context(j) #>> '{task,name}', 'a', 'chain: the context names task a')
  FROM workflow.jobs j WHERE id = :j;

SELECT pg_temp.succeed(:j, '"out-a"') \gset
SELECT is(pg_temp.st(:j), 'queued chain/1 a1 t1', 'chain: after a, the job is queued at task b');
SELECT is((SELECT runner_id FROM workflow.jobs WHERE id = :j), NULL, 'chain: the runner is released between tasks');
SELECT is(pg_temp.claim(:j), 'running', 'chain: task b is claimed');
SELECT is(workflow.job_context(j) -> 'results', '{"a": "out-a"}'::jsonb,
          'chain: the context of b holds the output of a under "results"')
  FROM workflow.jobs j WHERE id = :j;
SELECT is(workflow.job_context(j) #>> '{task,name}', 'b', 'chain: the context names task b')
  FROM workflow.jobs j WHERE id = :j;
SELECT is(workflow.job_context(j) #> '{job,params}', '{"n": 1}'::jsonb, 'chain: the context holds the params')
  FROM workflow.jobs j WHERE id = :j;

SELECT pg_temp.succeed(:j, '{"b": [1, 2]}') \gset
SELECT is(pg_temp.st(:j), 'queued chain/2 a1 t1', 'chain: after b, the job is queued at task c');
SELECT is(pg_temp.claim(:j), 'running', 'chain: task c is claimed');
SELECT is(workflow.job_context(j) -> 'results', '{"a": "out-a", "b": {"b": [1, 2]}}'::jsonb,
          'chain: the context of c holds the outputs of a and b')
  FROM workflow.jobs j WHERE id = :j;

SELECT pg_temp.succeed(:j, '"out-c"') \gset
SELECT is(pg_temp.st(:j), 'succeeded chain/2 a1 t1', 'chain: after the last task the job succeeded');
SELECT is((SELECT result FROM workflow.jobs WHERE id = :j), '"out-c"'::jsonb,
          'chain: the job result is the output of the last task');
SELECT isnt((SELECT finished_at FROM workflow.jobs WHERE id = :j), NULL, 'chain: finished_at is set');
SELECT results_eq(
    format($$SELECT task, status, attempt, output FROM workflow.task_runs
              WHERE job_id = %s ORDER BY id$$, :j),
    $$VALUES ('a', 'succeeded', 1, '"out-a"'::jsonb),
             ('b', 'succeeded', 1, '{"b": [1, 2]}'::jsonb),
             ('c', 'succeeded', 1, '"out-c"'::jsonb)$$,
    'chain: task_runs has exactly one succeeded row per task, with its output');
SELECT is(pg_temp.claim(:j), NULL, 'chain: a finished job cannot be claimed again');

-------------------------------------------------------------------------------
-- Task retries and their backoff
-------------------------------------------------------------------------------

-- the backoff function itself (retry n, n >= 1)
SELECT is(workflow._backoff('fixed', '5 s', NULL, 1), interval '5 s', 'backoff: fixed, retry 1');
SELECT is(workflow._backoff('fixed', '5 s', NULL, 7), interval '5 s', 'backoff: fixed, retry 7');
SELECT is(workflow._backoff('linear', '2 s', NULL, 1), interval '2 s', 'backoff: linear, retry 1');
SELECT is(workflow._backoff('linear', '2 s', NULL, 3), interval '6 s', 'backoff: linear, retry 3');
SELECT is(workflow._backoff('exponential', '1 s', NULL, 1), interval '1 s', 'backoff: exponential, retry 1');
SELECT is(workflow._backoff('exponential', '1 s', NULL, 4), interval '8 s', 'backoff: exponential, retry 4');
SELECT is(workflow._backoff('exponential', '1 s', '1 min', 10), interval '1 min',
          'backoff: exponential is capped by max_delay');
SELECT is(workflow._backoff('linear', '10 s', '25 s', 3), interval '25 s', 'backoff: linear is capped by max_delay');
SELECT is(workflow._backoff('exponential', '1 s', '1 hour', 1000), interval '1 hour',
          'backoff: a huge retry number does not overflow');

-- fixed: 3 attempts, 5 s apart
SELECT workflow.create_job('sm_fixed') AS j \gset
SELECT is(pg_temp.claim(:j), 'running', 'retry fixed: claimed');
SELECT pg_temp.fail(:j, 'boom 1') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t2', 'retry fixed: a failed attempt queues attempt 2 of the same task');
SELECT is((SELECT date_trunc('second', run_at - now()) FROM workflow.jobs WHERE id = :j), interval '5 s',
          'retry fixed: attempt 2 is due after the delay');
SELECT is((SELECT error ->> 'message' FROM workflow.jobs WHERE id = :j), 'boom 1',
          'retry fixed: the error of the attempt is kept on the job');
SELECT ok(:j NOT IN (SELECT workflow.next_jobs(0, 99)), 'retry fixed: not listed before the delay');
SELECT is(pg_temp.claim(:j), NULL, 'retry fixed: not claimable before the delay');
SELECT pg_temp.due(:j) \gset
SELECT is(pg_temp.claim(:j), 'running', 'retry fixed: claimable once due');
SELECT is(workflow.job_context(j) -> 'task', '{"name": "t", "attempt": 2}'::jsonb,
          'retry fixed: the context tells the task attempt')
  FROM workflow.jobs j WHERE id = :j;
SELECT pg_temp.fail(:j, 'boom 2') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT date_trunc('second', run_at - now()) FROM workflow.jobs WHERE id = :j)::text,
          'queued chain/0 a1 t3 00:00:05', 'retry fixed: attempt 3, again after 5 s');
SELECT is(pg_temp.fail_again(:j), NULL, 'retry fixed: the last attempt fails ...');
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t3', '... and, with no fallback and no onerror, the job failed');
SELECT is((SELECT error ->> 'message' FROM workflow.jobs WHERE id = :j), 'again',
          'retry fixed: the job error is the last error');
SELECT results_eq(
    format($$SELECT attempt, status FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :j),
    $$VALUES (1, 'failed'), (2, 'failed'), (3, 'failed')$$,
    'retry fixed: one failed task_runs row per attempt');

-- linear: 2 s, 4 s, 6 s
SELECT workflow.create_job('sm_linear') AS j \gset
SELECT is(ARRAY[pg_temp.fail_again(:j), pg_temp.fail_again(:j), pg_temp.fail_again(:j)],
          ARRAY[interval '2 s', interval '4 s', interval '6 s'],
          'retry linear: delays 2 s, 4 s, 6 s');
SELECT is(pg_temp.fail_again(:j), NULL, 'retry linear: attempt 4 is the last');
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t4', 'retry linear: failed after 4 attempts');

-- exponential, capped: 1 s, 2 s, 3 s (not 4), 3 s (not 8)
SELECT workflow.create_job('sm_exp') AS j \gset
SELECT is(ARRAY[pg_temp.fail_again(:j), pg_temp.fail_again(:j), pg_temp.fail_again(:j),
                pg_temp.fail_again(:j)],
          ARRAY[interval '1 s', interval '2 s', interval '3 s', interval '3 s'],
          'retry exponential: delays 1 s, 2 s, then capped at max_delay 3 s');
SELECT is(pg_temp.fail_again(:j), NULL, 'retry exponential: attempt 5 is the last');

-------------------------------------------------------------------------------
-- Fallback
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_fallback') AS j \gset
SELECT is(pg_temp.fail_again(:j), interval '0', 'fallback: attempt 1 failed, attempt 2 at once (delay 0)');
SELECT is(pg_temp.fail_again(:j), interval '0', 'fallback: after the last attempt the job is queued at once ...');
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t2 fallback', '... for the fallback of the same task (in_fallback)');
SELECT is((SELECT task_type FROM workflow.jobs WHERE id = :j), NULL, 'fallback: runs in the runners'' queue');
SELECT ok(:j IN (SELECT workflow.next_jobs(0, 99)), 'fallback: listed by next_jobs for the runners');
SELECT is(pg_temp.claim(:j), 'running', 'fallback: claimed');
SELECT pg_temp.succeed(:j, '"from fallback"') \gset
SELECT is(pg_temp.st(:j), 'queued chain/1 a1 t1', 'fallback: its success is the task''s success: next task');
SELECT is(pg_temp.claim(:j), 'running', 'fallback: next task claimed');
SELECT is(workflow.job_context(j) -> 'results', '{"a": "from fallback"}'::jsonb,
          'fallback: its output is the task''s result')
  FROM workflow.jobs j WHERE id = :j;
SELECT pg_temp.succeed(:j, '"b"') \gset
SELECT is(pg_temp.st(:j), 'succeeded chain/1 a1 t1', 'fallback: the job succeeded');
SELECT results_eq(
    format($$SELECT task, attempt, fallback, status FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :j),
    $$VALUES ('a', 1, false, 'failed'), ('a', 2, false, 'failed'), ('a', 2, true, 'succeeded'),
             ('b', 1, false, 'succeeded')$$,
    'fallback: task_runs records the attempts and the fallback run');

-- a failing fallback fails the task: onerror
SELECT workflow.create_job('sm_fallback') AS j \gset
SELECT pg_temp.fail_again(:j) \gset
SELECT pg_temp.fail_again(:j) \gset
SELECT is(pg_temp.fail_again(:j), interval '0', 'fallback fails: the job is queued at once ...');
SELECT is(pg_temp.st(:j), 'queued onerror/0 a1 t1', '... for the onerror chain, not for another fallback');

-- the fallback of an external task runs in the runners' queue
SELECT workflow.create_job('sm_ext_fallback') AS j \gset
SELECT is(pg_temp.claim(:j, 'worker-1'), 'running', 'external fallback: the worker claims the task');
SELECT pg_temp.fail(:j, 'card declined') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a1 t1 fallback', 'external fallback: the fallback is due');
SELECT is((SELECT task_type FROM workflow.jobs WHERE id = :j), NULL,
          'external fallback: the job left the external queue');
SELECT ok(:j IN (SELECT workflow.next_jobs(0, 99)) AND :j NOT IN (SELECT workflow.next_jobs(0, 99, 'payment')),
          'external fallback: listed for the runners, not for payment workers');

-------------------------------------------------------------------------------
-- onerror
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_onerror') AS j \gset
SELECT pg_temp.run_ok(:j, '"a"') \gset
SELECT pg_temp.run_fail(:j, 'b broke') \gset
SELECT is(pg_temp.st(:j), 'queued onerror/0 a1 t1', 'onerror: a failed task starts the onerror chain at step 0');
SELECT is(pg_temp.claim(:j), 'running', 'onerror: e1 claimed');
SELECT is(workflow.job_context(j) #>> '{task,name}', 'e1', 'onerror: the context names e1')
  FROM workflow.jobs j WHERE id = :j;
SELECT pg_temp.succeed(:j, '"e1"') \gset
SELECT is(pg_temp.st(:j), 'queued onerror/1 a1 t1', 'onerror: the chain advances to e2');
SELECT pg_temp.run_ok(:j, '"e2"') \gset
SELECT is(pg_temp.st(:j), 'failed onerror/1 a1 t1', 'onerror: after the chain, the job failed');
SELECT is((SELECT error ->> 'message' FROM workflow.jobs WHERE id = :j), 'b broke',
          'onerror: the job error is the original error');
SELECT is((SELECT error ->> 'task' FROM workflow.jobs WHERE id = :j), 'b',
          'onerror: the job error names the failed task');
SELECT is((SELECT result FROM workflow.jobs WHERE id = :j), NULL, 'onerror: a failed job has no result');

-------------------------------------------------------------------------------
-- Whole-job attempts (max_attempts)
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_whole') AS j \gset
SELECT pg_temp.run_ok(:j, '"a"') \gset
SELECT pg_temp.run_fail(:j, 'first') \gset
SELECT is(pg_temp.st(:j), 'queued chain/0 a2 t1', 'whole job: attempt 2 starts again at chain step 0');
SELECT is((SELECT date_trunc('second', run_at - now()) FROM workflow.jobs WHERE id = :j), interval '10 s',
          'whole job: attempt 2 after initial_delay');
SELECT pg_temp.due(:j) \gset
SELECT is(pg_temp.claim(:j), 'running', 'whole job: attempt 2 claimed');
SELECT is(workflow.job_context(j) -> 'job' -> 'attempt', '2'::jsonb, 'whole job: the context tells the job attempt')
  FROM workflow.jobs j WHERE id = :j;
SELECT pg_temp.fail(:j, 'second') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT date_trunc('second', run_at - now()) FROM workflow.jobs WHERE id = :j)::text,
          'queued chain/0 a3 t1 00:00:15', 'whole job: attempt 3 after 2 x 10 s capped at max_delay 15 s');
SELECT is(pg_temp.fail_again(:j), NULL, 'whole job: the last attempt fails ...');
SELECT is(pg_temp.st(:j), 'failed chain/0 a3 t1', '... and the job failed for good');

-------------------------------------------------------------------------------
-- oncancel
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_cancel') AS j \gset
SELECT is(pg_temp.claim(:j), 'running', 'oncancel: task a claimed');
SELECT ok(workflow.cancel_job(:j, 'test'), 'oncancel: cancel_job of a running job');
SELECT is(pg_temp.st(:j), 'queued oncancel/0 a1 t1', 'oncancel: the oncancel chain is queued at step 0');
SELECT is(pg_temp.claim(:j), 'running', 'oncancel: c1 claimed');
SELECT pg_temp.fail(:j, 'cleanup failed') \gset
SELECT is((SELECT execution::text FROM workflow.jobs WHERE id = :j), 'canceled',
          'oncancel: a failing oncancel task still ends canceled');
SELECT isnt((SELECT finished_at FROM workflow.jobs WHERE id = :j), NULL, 'oncancel: finished_at is set');

-------------------------------------------------------------------------------
-- retryable = false
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_noretry') AS j \gset
SELECT is(pg_temp.claim(:j), 'running', 'not retryable: claimed');
SELECT pg_temp.fail(:j, 'fatal', false) \gset
SELECT is(pg_temp.st(:j), 'failed chain/0 a1 t1', 'not retryable: the remaining 4 attempts are skipped');
SELECT is((SELECT count(*)::int FROM workflow.task_runs WHERE job_id = :j), 1, 'not retryable: one attempt ran');

-------------------------------------------------------------------------------
-- External tasks
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_ext') AS j \gset
SELECT pg_temp.run_ok(:j, '"a"') \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT task_type FROM workflow.jobs WHERE id = :j),
          'queued chain/1 a1 t1 payment', 'external: the next task is external: queued with its task_type');
SELECT ok(:j IN (SELECT workflow.next_jobs(0, 9, 'payment')), 'external: listed for payment workers');
SELECT ok(:j NOT IN (SELECT workflow.next_jobs(0, 9)), 'external: not listed for the runners');
SELECT ok(:j NOT IN (SELECT workflow.next_jobs(0, 9, 'shipping')), 'external: not listed for another type');
SELECT is(pg_temp.claim(:j, 'worker-1'), 'running', 'external: a payment worker claims it');
SELECT is(workflow.job_context(j) -> 'results', '{"a": "a"}'::jsonb, 'external: the worker''s input has the results')
  FROM workflow.jobs j WHERE id = :j;
SELECT pg_temp.succeed(:j, '{"paid": true}') \gset
SELECT is(pg_temp.st(:j) || ' ' || coalesce((SELECT task_type FROM workflow.jobs WHERE id = :j), '-'),
          'queued chain/2 a1 t1 -', 'external: after it, the next SQL task is back in the runners'' queue');
SELECT ok(:j IN (SELECT workflow.next_jobs(0, 9)), 'external: listed for the runners again');

SELECT workflow.create_job('sm_ext_first') AS j \gset
SELECT is((SELECT task_type FROM workflow.jobs WHERE id = :j), 'payment',
          'external first: a job starting with an external task is created in its queue');
SELECT ok(:j IN (SELECT workflow.next_jobs(0, 9, 'payment')) AND :j NOT IN (SELECT workflow.next_jobs(0, 9)),
          'external first: listed for payment workers only');

-------------------------------------------------------------------------------
-- keep_running
-------------------------------------------------------------------------------

SELECT workflow.create_job('sm_keep') AS j \gset
SELECT is(pg_temp.claim(:j), 'running', 'keep_running: claimed');
SELECT lease AS lease FROM workflow.jobs WHERE id = :j \gset
SELECT pg_temp.succeed(:j, '"a"', true) \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT runner_id FROM workflow.jobs WHERE id = :j),
          'running chain/1 a1 t1 r1', 'keep_running: the next SQL task stays claimed by the same runner');
SELECT is((SELECT lease FROM workflow.jobs WHERE id = :j), :lease::bigint, 'keep_running: same claim (lease)');
SELECT ok(:j NOT IN (SELECT workflow.next_jobs(0, 99)), 'keep_running: not offered to other runners');
SELECT is(workflow.job_context(j) -> 'results', '{"a": "a"}'::jsonb, 'keep_running: b sees the result of a')
  FROM workflow.jobs j WHERE id = :j;
SELECT pg_temp.succeed(:j, '"b"', true) \gset
SELECT is(pg_temp.st(:j) || ' ' || coalesce((SELECT runner_id FROM workflow.jobs WHERE id = :j), '-')
                         || ' ' || (SELECT task_type FROM workflow.jobs WHERE id = :j),
          'queued chain/2 a1 t1 - payment', 'keep_running: an external next task is queued for its workers anyway');

-------------------------------------------------------------------------------
-- Guarded transitions: a late or duplicated outcome changes nothing
-------------------------------------------------------------------------------
-- README "Concepts": "Every transition is one guarded transaction that names
-- the state it expects, so a late or repeated call can never overwrite a
-- newer state"; src/README.md: "Every transition locks the job row and names the
-- state it expects".  The transition functions are handed a row that is no
-- longer running (a report that arrives twice, or after the job ended): they
-- must refuse it (an error) or ignore it, never advance or reopen the job.

-- the same success reported twice: the second report must not complete task b
SELECT workflow.create_job('sm_chain3') AS j \gset
SELECT pg_temp.run_ok(:j, '"a"') \gset
SELECT pg_temp.try(format('SELECT workflow._task_succeeded(j, %L, now()) FROM workflow.jobs j WHERE id = %s FOR UPDATE',
                          '"duplicate"', :j)) AS dummy \gset
SELECT is(pg_temp.st(:j), 'queued chain/1 a1 t1',
          'guard: a duplicated success for a job no longer running does not advance it');
SELECT is((SELECT count(*)::int FROM workflow.task_runs WHERE job_id = :j AND task = 'b'), 0,
          'guard: ... and records no run of a task that never ran');

-- a late failure of a job that already succeeded
SELECT workflow.create_job('sm_noretry') AS j \gset
SELECT pg_temp.run_ok(:j, '"done"') \gset
SELECT pg_temp.try(format('SELECT workflow._task_failed(j, %L, now()) FROM workflow.jobs j WHERE id = %s FOR UPDATE',
                          '{"message": "late"}', :j)) AS dummy \gset
SELECT is(pg_temp.st(:j) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :j)::text,
          'succeeded chain/0 a1 t1 "done"', 'guard: a late failure does not touch a succeeded job');
SELECT is((SELECT error FROM workflow.jobs WHERE id = :j), NULL, 'guard: ... nor set its error');

SELECT * FROM finish();
ROLLBACK;
