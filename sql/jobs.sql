--
-- Jobs: create_job, get_job, cancel_job, resume_job, retry_job, add_info and
-- job_info, with every bad input.
--
-- No runner executes jobs in this instance: jobs are claimed with run_job
-- and finished with finish_job, and a task that waits is simulated with a
-- direct UPDATE to 'waiting' (what workflow.wait() does from a task).
-- Workflows are named jobs_*; the file drops them at the end.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 1001 whatever ran before, so that the error
-- messages that name a job are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 1001, false) AS first_job_id;

SELECT workflow.create_workflow('{"name": "jobs_a", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "jobs_b", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "jobs_ext", "chain": [{"name": "x", "task_type": "jobs.type"}, {"name": "y", "sql": "select 1"}]}');
SELECT workflow.create_workflow($${"name": "jobs_wait",
  "chain":   [{"name": "w", "wait": "signal"}, {"name": "b", "sql": "select 2"}],
  "onerror": [{"name": "e", "sql": "select 3"}]}$$);
SELECT workflow.create_workflow($${"name": "jobs_cancel",
  "chain":    [{"name": "a", "sql": "select 1"}],
  "oncancel": [{"name": "undo", "sql": "select 'undo'"}]}$$);
SELECT workflow.create_workflow($${"name": "jobs_retry",
  "chain": [{"name": "a", "wait": "signal"}, {"name": "b", "wait": "signal"}, {"name": "c", "sql": "select 3"}]}$$);
SELECT workflow.create_workflow($${"name": "jobs_task_retry",
  "chain": [{"name": "w", "wait": "signal", "attempts": 2, "delay": "1 hour"}]}$$);
SELECT workflow.create_workflow($${"name": "jobs_fallback",
  "chain": [{"name": "f", "sql": "select 1", "fallback": "select 2"}]}$$);
SELECT workflow.create_workflow($${"name": "jobs_again", "max_attempts": 2, "initial_delay": "10 min", "max_delay": "1 hour",
  "chain": [{"name": "w", "wait": "signal"}]}$$);

-------------------------------------------------------------------------------
-- create_job
-------------------------------------------------------------------------------

-- defaults
SELECT workflow.create_job('jobs_a') AS j1 \gset
SELECT :j1 AS j1;
SELECT workflow, version, execution, params, target, priority, run_at <= now() AS due,
       phase, step, task_type, in_fallback, attempt, task_attempt, runner_id, lease,
       idempotency_key, created_by = current_user::regrole AS mine, started_at, finished_at,
       result, error
  FROM workflow.jobs WHERE id = :j1;

-- every argument
SELECT workflow.create_job('jobs_a', '{"order": 42, "items": ["x", "y"]}', 'customer-7',
                           '2030-01-01 00:00:00+00', 5) AS j2 \gset
SELECT params, target, priority, run_at = '2030-01-01 00:00:00+00' AS run_at_given
  FROM workflow.jobs WHERE id = :j2;
SELECT workflow.create_job(workflow => 'jobs_a', priority => -3, version => 1) AS j3 \gset
SELECT priority, version FROM workflow.jobs WHERE id = :j3;
-- an external first task: the job is queued for that task type
SELECT workflow.create_job('jobs_ext') AS jx \gset
SELECT step, task_type FROM workflow.jobs WHERE id = :jx;

-- callable inside the application's transaction: nothing is left on rollback
BEGIN;
SELECT workflow.create_job('jobs_a', '{"rolled": "back"}') AS jr \gset
SELECT count(*) FROM workflow.jobs WHERE id = :jr;
ROLLBACK;
SELECT count(*) FROM workflow.jobs WHERE id = :jr;

-- idempotency key: the job that holds the key is returned for the same
-- request, in any state, for as long as it exists
SELECT workflow.create_job('jobs_a', '{"order": 1}', idempotency_key => 'order-1') AS k1 \gset
SELECT workflow.create_job('jobs_a', '{"order": 1}', idempotency_key => 'order-1') = :k1 AS same_job;
SELECT count(*) FROM workflow.jobs WHERE idempotency_key = 'order-1';
-- ... also once it is canceled
SELECT workflow.cancel_job(:k1);
SELECT workflow.create_job('jobs_a', '{"order": 1}', idempotency_key => 'order-1') = :k1 AS same_job;
-- ... or has succeeded
SELECT workflow.create_job('jobs_a', '{"order": 2}', idempotency_key => 'order-2') AS k2 \gset
SELECT id = :k2, execution FROM workflow.run_job(:k2, 'jobs-runner');
SELECT execution FROM workflow.finish_job(:k2, 'jobs-runner', 'succeeded');
SELECT workflow.create_job('jobs_a', '{"order": 2}', idempotency_key => 'order-2') = :k2 AS same_job;
-- another request with the key is an error, and creates nothing
SELECT workflow.create_job('jobs_a', '{"other": "params"}', idempotency_key => 'order-1');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_b', '{"order": 1}', idempotency_key => 'order-1');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', '{"order": 1}', target => 'cust-1', idempotency_key => 'order-1');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', '{"order": 1}', idempotency_key => 'order-1', version => 1) = :k1 AS same_job;
SELECT execution, count(*) FROM workflow.jobs
 WHERE idempotency_key IN ('order-1', 'order-2')
 GROUP BY execution ORDER BY execution;

-- bad input
SELECT workflow.create_job(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', run_at => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', priority => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', '"x"');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', 'null');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', target => '');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', idempotency_key => '');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', target => repeat('t', 1001));
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', idempotency_key => repeat('k', 1001));
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('JOBS_A');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', version => 2);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', version => 0);
\echo :LAST_ERROR_SQLSTATE
SET workflow.max_payload_size = '1kB';
SELECT workflow.create_job('jobs_a', jsonb_build_object('blob', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
RESET workflow.max_payload_size;
-- the longest target and key are fine
SELECT workflow.create_job('jobs_b', target => repeat('t', 1000), idempotency_key => repeat('k', 1000)) IS NOT NULL AS created;
-- none of the failed calls created a job
SELECT workflow, count(*) FROM workflow.jobs WHERE workflow LIKE 'jobs\_%'
 GROUP BY workflow ORDER BY workflow;

-------------------------------------------------------------------------------
-- get_job
-------------------------------------------------------------------------------

SELECT jsonb_object_keys(workflow.get_job(:j1)) AS key ORDER BY 1;
SELECT (g ->> 'id')::bigint = :j2 AS id, g -> 'workflow' AS workflow, g -> 'version' AS version,
       g -> 'execution' AS execution, g -> 'phase' AS phase, g -> 'step' AS step,
       g -> 'task' AS task, g -> 'params' AS params, g -> 'target' AS target,
       g -> 'tasks' AS tasks, g -> 'info' AS info
  FROM workflow.get_job(:j2) g;
SELECT jsonb_typeof(g -> 'created_at') AS created_at, jsonb_typeof(g -> 'run_at') AS run_at,
       jsonb_typeof(g -> 'started_at') AS started_at, jsonb_typeof(g -> 'finished_at') AS finished_at,
       g ->> 'created_by' = current_user AS created_by_me
  FROM workflow.get_job(:j1) g;
SELECT workflow.get_job(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.get_job(NULL);
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- cancel_job
-------------------------------------------------------------------------------

-- a queued job without an oncancel chain is canceled at once
SELECT workflow.cancel_job(:j1, 'not needed');
SELECT execution, finished_at IS NOT NULL AS finished, error - 'canceled_by' AS error,
       error ->> 'canceled_by' = current_user AS canceled_by_me
  FROM workflow.jobs WHERE id = :j1;
-- again: false, nothing changes
SELECT workflow.cancel_job(:j1);
SELECT execution, error ->> 'reason' AS reason FROM workflow.jobs WHERE id = :j1;

-- with an oncancel chain, the job is queued in phase oncancel
SELECT workflow.create_job('jobs_cancel') AS c1 \gset
SELECT workflow.cancel_job(:c1);
SELECT g -> 'execution' AS execution, g -> 'phase' AS phase, g -> 'step' AS step,
       g -> 'task' AS task, g -> 'error' -> 'message' AS message, g -> 'error' -> 'reason' AS reason
  FROM workflow.get_job(:c1) g;
-- it is being canceled: a second cancel is false
SELECT workflow.cancel_job(:c1);
SELECT execution, phase FROM workflow.jobs WHERE id = :c1;
-- the runner claims the oncancel task; canceling is still false while it runs
SELECT execution, phase, step FROM workflow.run_job(:c1, 'jobs-runner');
SELECT workflow.cancel_job(:c1);

-- a running job (claimed, in the chain) is canceled
SELECT workflow.create_job('jobs_a') AS c2 \gset
SELECT execution FROM workflow.run_job(:c2, 'jobs-runner');
SELECT workflow.cancel_job(:c2, 'operator');
SELECT execution, lease, error ->> 'reason' AS reason FROM workflow.jobs WHERE id = :c2;

-- a waiting job is canceled
SELECT workflow.create_job('jobs_wait') AS c3 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :c3;
SELECT workflow.cancel_job(:c3);
SELECT execution FROM workflow.jobs WHERE id = :c3;

-- a succeeded or failed job cannot be canceled
SELECT workflow.cancel_job(:k2);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a') AS f1 \gset
SELECT execution FROM workflow.run_job(:f1, 'jobs-runner');
SELECT execution FROM workflow.finish_job(:f1, 'jobs-runner', 'failed', '{"message": "broken"}');
SELECT workflow.cancel_job(:f1);
\echo :LAST_ERROR_SQLSTATE
SELECT execution, error FROM workflow.jobs WHERE id = :f1;

SELECT workflow.cancel_job(999999999);
\echo :LAST_ERROR_SQLSTATE
-- a reason larger than workflow.max_payload_size is refused like any other
-- payload (only the SQLSTATE is shown), and the job is left as it was
SELECT workflow.create_job('jobs_a') AS c4 \gset
SET workflow.max_payload_size = '1kB';
\set VERBOSITY sqlstate
SELECT workflow.cancel_job(:c4, repeat('y', 5000));
\set VERBOSITY default
RESET workflow.max_payload_size;
SELECT execution, error FROM workflow.jobs WHERE id = :c4;
SELECT workflow.cancel_job(NULL);
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- resume_job
-------------------------------------------------------------------------------

-- only a waiting job can be resumed
SELECT workflow.create_job('jobs_wait', '{"n": 1}') AS w1 \gset
SELECT workflow.resume_job(:w1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.resume_job(:k2, '{"late": true}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.resume_job(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.resume_job(NULL);
\echo :LAST_ERROR_SQLSTATE

-- the job waits at its first task (a "signal" wait)
SELECT execution, runner_id FROM workflow.run_job(:w1, 'jobs-runner');
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w1;
-- a result larger than the limit is refused, and the job keeps waiting
SET workflow.max_payload_size = '1kB';
SELECT workflow.resume_job(:w1, jsonb_build_object('blob', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
RESET workflow.max_payload_size;
SELECT execution FROM workflow.jobs WHERE id = :w1;
-- resumed with a result: the task succeeds with that output and the job is
-- queued at the next task
SELECT workflow.resume_job(:w1, '{"approved": true}');
SELECT g -> 'execution' AS execution, g -> 'phase' AS phase, g -> 'step' AS step,
       g -> 'task' AS task, g -> 'runner_id' AS runner_id, g -> 'lease' AS lease
  FROM workflow.get_job(:w1) g;
SELECT t -> 'task' AS task, t -> 'phase' AS phase, t -> 'step' AS step, t -> 'attempt' AS attempt,
       t -> 'status' AS status, t -> 'output' AS output, t -> 'runner_id' AS runner_id,
       jsonb_typeof(t -> 'duration_ms') AS duration_ms
  FROM jsonb_array_elements(workflow.get_job(:w1) -> 'tasks') t;
-- the output is visible to the next tasks
SELECT workflow.job_context(j) -> 'results' AS results, workflow.job_context(j) -> 'task' AS task
  FROM workflow.jobs j WHERE id = :w1;
-- resuming again is refused: it is queued now
SELECT workflow.resume_job(:w1);
\echo :LAST_ERROR_SQLSTATE

-- resumed with an error: the task fails; the onerror chain runs
SELECT workflow.create_job('jobs_wait') AS w2 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w2;
SELECT workflow.resume_job(:w2, error => 'rejected by the approver');
SELECT execution, phase, step, error FROM workflow.jobs WHERE id = :w2;
SELECT t -> 'task' AS task, t -> 'status' AS status, t -> 'error' AS error
  FROM jsonb_array_elements(workflow.get_job(:w2) -> 'tasks') t;

-- an error with attempts left: the task is retried after its delay
SELECT workflow.create_job('jobs_task_retry') AS w3 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w3;
SELECT workflow.resume_job(:w3, error => 'not yet');
SELECT execution, step, task_attempt, run_at > now() + interval '59 min' AS delayed
  FROM workflow.jobs WHERE id = :w3;
-- the last attempt fails: no onerror chain, one job attempt: failed
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w3;
SELECT workflow.resume_job(:w3, error => 'still not');
SELECT execution, error, finished_at IS NOT NULL AS finished FROM workflow.jobs WHERE id = :w3;

-- an error on a task with a fallback: the fallback is due
SELECT workflow.create_job('jobs_fallback') AS w4 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w4;
SELECT workflow.resume_job(:w4, error => 'boom');
SELECT execution, step, in_fallback, task_type FROM workflow.jobs WHERE id = :w4;

-- an error with whole-job attempts left: the job starts again after
-- initial_delay
SELECT workflow.create_job('jobs_again') AS w5 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w5;
SELECT workflow.resume_job(:w5, error => 'first try failed');
SELECT execution, attempt, phase, step, task_attempt,
       run_at > now() + interval '9 min' AND run_at <= now() + interval '10 min' AS delayed
  FROM workflow.jobs WHERE id = :w5;

-- resuming the last task with a result: the job succeeds with that result
SELECT workflow.create_job('jobs_again') AS w6 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w6;
SELECT workflow.resume_job(:w6, '{"done": 1}');
SELECT execution, result, error, finished_at IS NOT NULL AS finished FROM workflow.jobs WHERE id = :w6;

-- an error text larger than workflow.max_payload_size is refused like any
-- other payload (only the SQLSTATE is shown), and the job keeps waiting
SELECT workflow.create_job('jobs_wait') AS w7 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :w7;
SET workflow.max_payload_size = '1kB';
\set VERBOSITY sqlstate
SELECT workflow.resume_job(:w7, error => repeat('x', 5000));
\set VERBOSITY default
RESET workflow.max_payload_size;
SELECT execution FROM workflow.jobs WHERE id = :w7;

-------------------------------------------------------------------------------
-- retry_job
-------------------------------------------------------------------------------

-- only failed or canceled jobs
SELECT workflow.retry_job(:w1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.retry_job(:k2);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.retry_job(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.retry_job(NULL);
\echo :LAST_ERROR_SQLSTATE

-- a job whose first task succeeded and second failed is retried from the
-- second task
SELECT workflow.create_job('jobs_retry') AS r1 \gset
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :r1;
SELECT workflow.resume_job(:r1, '{"a": "ok"}');
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :r1;
SELECT workflow.resume_job(:r1, error => 'b failed');
SELECT execution, step, error ->> 'task' AS failed_task FROM workflow.jobs WHERE id = :r1;
SELECT workflow.retry_job(:r1);
SELECT execution, phase, step, task_attempt, attempt, result, error, finished_at
  FROM workflow.jobs WHERE id = :r1;
SELECT workflow.get_job(:r1) -> 'task' AS task;
-- the output of the task that succeeded is still visible to the next tasks
SELECT workflow.job_context(j) -> 'results' AS results FROM workflow.jobs j WHERE id = :r1;

-- a canceled job is retried from its first task without a success
SELECT workflow.retry_job(:j1);
SELECT execution, phase, step, error, finished_at FROM workflow.jobs WHERE id = :j1;
-- a job canceled through its oncancel chain goes back to the chain
SELECT workflow.retry_job(:c1);
\echo :LAST_ERROR_SQLSTATE
SELECT execution FROM workflow.finish_job(:c1, 'jobs-runner', 'canceled');
SELECT workflow.retry_job(:c1);
SELECT execution, phase, step FROM workflow.jobs WHERE id = :c1;
-- a failed job is retried from its failed task
SELECT workflow.retry_job(:w3);
SELECT execution, phase, step, task_attempt FROM workflow.jobs WHERE id = :w3;

-------------------------------------------------------------------------------
-- add_info / job_info
-------------------------------------------------------------------------------

SELECT workflow.add_info(:w1, '{"progress": 10}');
SELECT workflow.add_info(:w1, '"half way"');
SELECT workflow.add_info(:w1, '{"progress": 100}');
SELECT info FROM workflow.job_info(:w1);
SELECT count(*), bool_and(created_at IS NOT NULL) AS timed FROM workflow.job_info(:w1);
SELECT i -> 'info' AS info, jsonb_typeof(i -> 'at') AS at
  FROM jsonb_array_elements(workflow.get_job(:w1) -> 'info') i;
-- a finished job can still be annotated
SELECT workflow.add_info(:k2, '{"note": "audited"}');
SELECT info FROM workflow.job_info(:k2);
-- a job without info
SELECT count(*) FROM workflow.job_info(:j2);

SELECT workflow.add_info(:w1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.add_info(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.add_info(999999999, '{}');
\echo :LAST_ERROR_SQLSTATE
SET workflow.max_payload_size = '1kB';
SELECT workflow.add_info(:w1, jsonb_build_object('blob', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
RESET workflow.max_payload_size;
SELECT * FROM workflow.job_info(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.job_info(NULL);
\echo :LAST_ERROR_SQLSTATE
-- nothing was added by the failed calls
SELECT count(*) FROM workflow.job_info(:w1);

-------------------------------------------------------------------------------
-- one role cannot put its jobs before another's, nor take its keys
-------------------------------------------------------------------------------

CREATE ROLE jobs_alice LOGIN IN ROLE workflow_user;
CREATE ROLE jobs_bob LOGIN IN ROLE workflow_user;
SET ROLE jobs_alice;
-- above workflow.max_user_priority (0 by default): refused, nothing created
SELECT workflow.create_job('jobs_a', '{"who": "alice"}', priority => 2147483647);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', '{"who": "alice"}', priority => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.jobs WHERE params = '{"who": "alice"}';
-- lower priorities are a role's own business
SELECT workflow.create_job('jobs_a', '{"who": "alice"}', priority => -5) IS NOT NULL AS created;
-- a run_at in the past means now: it does not jump ahead of older jobs
SELECT workflow.create_job('jobs_a', '{"who": "alice", "n": 2}', run_at => '2000-01-01') AS past \gset
SELECT run_at > '2020-01-01' AS clamped_to_now FROM workflow.jobs WHERE id = :past;
-- an infinite run_at is refused
SELECT workflow.create_job('jobs_a', run_at => 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('jobs_a', run_at => '-infinity');
\echo :LAST_ERROR_SQLSTATE
-- idempotency keys are each role's own
SELECT workflow.create_job('jobs_a', '{"who": "alice"}', idempotency_key => 'shared-1') AS alice_key \gset
SET ROLE jobs_bob;
SELECT workflow.create_job('jobs_a', '{"who": "bob"}', idempotency_key => 'shared-1') AS bob_key \gset
SELECT :bob_key <> :alice_key AS not_alices_job;
SELECT workflow.create_job('jobs_a', '{"who": "bob"}', idempotency_key => 'shared-1') = :bob_key AS own_key_protects;
SELECT count(*) AS bobs_jobs FROM workflow.jobs WHERE idempotency_key = 'shared-1';
RESET ROLE;
SELECT created_by::text, count(*) FROM workflow.jobs WHERE idempotency_key = 'shared-1'
 GROUP BY 1 ORDER BY 1;
-- targets are each role's own: alice's job holding "cust-7" (a wait task,
-- held for as long as it waits) does not hold back bob's job of "cust-7"
SET ROLE jobs_alice;
SELECT workflow.create_job('jobs_wait', '{"who": "alice"}', target => 'cust-7') AS t_alice \gset
SELECT workflow.create_job('jobs_wait', '{"who": "alice", "n": 2}', target => 'cust-7') AS t_alice2 \gset
SET ROLE jobs_bob;
SELECT workflow.create_job('jobs_wait', '{"who": "bob"}', target => 'cust-7') AS t_bob \gset
RESET ROLE;
SELECT (workflow.run_job(:t_alice, 'jobs-runner')).execution;
UPDATE workflow.jobs SET execution = 'waiting' WHERE id = :t_alice;
-- alice's second job waits for her first; bob's is runnable
SELECT :t_bob = ANY (ARRAY(SELECT workflow.next_jobs(0, 100))) AS bob_runnable,
       :t_alice2 = ANY (ARRAY(SELECT workflow.next_jobs(0, 100))) AS alice2_runnable;
SELECT (workflow.run_job(:t_alice2, 'jobs-runner')).id IS NULL AS alice2_refused;
SELECT (workflow.run_job(:t_bob, 'jobs-runner')).execution AS bob_claimed;
SELECT owner::text, target FROM workflow.target_locks WHERE target = 'cust-7' ORDER BY 1;
-- an administrator may give one role more
ALTER ROLE jobs_alice SET workflow.max_user_priority = 10;
SET workflow.max_user_priority = 10;
SET ROLE jobs_alice;
SELECT workflow.create_job('jobs_a', '{"who": "alice", "n": 3}', priority => 10) IS NOT NULL AS created;
-- and cannot raise it itself
SET workflow.max_user_priority = 100;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
RESET workflow.max_user_priority;
-- administrators are not limited, and keep their run_at
SELECT workflow.create_job('jobs_a', '{"who": "admin"}', priority => 2147483647, run_at => '2000-01-01') AS adm \gset
SELECT priority, run_at = '2000-01-01' AS kept FROM workflow.jobs WHERE id = :adm;
DELETE FROM workflow.target_locks WHERE owner IN ('jobs_alice'::regrole, 'jobs_bob'::regrole);
DELETE FROM workflow.jobs WHERE created_by IN ('jobs_alice'::regrole, 'jobs_bob'::regrole);
DROP ROLE jobs_alice;
DROP ROLE jobs_bob;

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true)
  FROM (SELECT DISTINCT name FROM workflow.workflows WHERE name LIKE 'jobs\_%') w
 ORDER BY name;
DELETE FROM workflow.runners WHERE id = 'jobs-runner';
SELECT count(*) FROM workflow.jobs WHERE workflow LIKE 'jobs\_%';
SELECT count(*) FROM workflow.job_info i
 WHERE NOT EXISTS (SELECT 1 FROM workflow.jobs j WHERE j.id = i.job_id);
SELECT count(*) FROM workflow.task_runs r
 WHERE NOT EXISTS (SELECT 1 FROM workflow.jobs j WHERE j.id = r.job_id);
