-- 050_complete_task.sql: workflow.complete_task(job_id, lease, output), the
-- external worker's report of a task done, as workers see it.
--
-- complete_task is C (src/report.c).  Its usual case -- the job is running
-- under the given lease, in its main chain, not in a fallback, without a
-- target -- is one statement that records the task run and either ends the
-- job as succeeded or queues it at its next task; every other case goes to
-- the PL/pgSQL workflow._complete_task.  Both paths are covered here, and
-- both must behave as workflow._task_succeeded does:
--
--   (1) the last task of a one-task workflow: the job succeeds with the
--       output as its result; the task_runs row; a NULL output;
--   (2) a three-task workflow external(ct.a) -> external(ct.b) -> sql: the
--       job is queued at each next task for whoever runs it (the workers of
--       its type, then the in-server runners), and the context of the next
--       task has the earlier outputs;
--   (3) repeats and refusals: the same lease and output again (false,
--       nothing changes), another output (55000), a stale or wrong lease
--       (55000), NULL lease / job id (22004), an unknown job (42704);
--   (4) a job with a target (general path): the target is held between
--       tasks and released at the end;
--   (5) workflow.max_payload_size: a too large output is refused (54000)
--       and the job stays running;
--   (6) the worker's heartbeat: complete_task records it (workflow.runners,
--       kind external, active_at), once per transaction; runner_status
--       derives an external worker's idle from the jobs it holds;
--   (7) an external task of the onerror chain (general path): the chain
--       goes on, and at its end the job fails with the chain task's error
--       (or, with attempts left, is queued for its next whole-job attempt);
--       an external task of the oncancel chain ends the job canceled.
--
-- One transaction, now() constant; no background runner executes jobs
-- (workflow.runners = 0 in the pgTAP cluster) and the sweeper cannot see the
-- uncommitted rows, so nothing moves unless this file moves it.  Sections start from an empty queue (pg_temp.reset) so that
-- poll_tasks hands out only the jobs of the section.  Each section uses
-- worker ids of its own: complete_task remembers, per transaction, which
-- worker's heartbeat it recorded last.

BEGIN;
SELECT plan(127);

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

-- compact state: "execution phase/step t<task attempt>"
CREATE FUNCTION pg_temp.st(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s/%s t%s', execution, phase, step, task_attempt)
      FROM workflow.jobs WHERE id = p_id
$$;

-- the whole job row, to show that a call changed nothing
CREATE FUNCTION pg_temp.job(p_id bigint)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb(j) FROM workflow.jobs j WHERE j.id = p_id
$$;

-- the number of task runs recorded for a job
CREATE FUNCTION pg_temp.runs(p_id bigint)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM workflow.task_runs WHERE job_id = p_id
$$;

-- how many tasks of a type a poll hands out (they stay claimed)
CREATE FUNCTION pg_temp.polled(p_type text, p_worker text)
RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(t.job_id ORDER BY t.job_id), '{}')
      FROM workflow.poll_tasks(p_type, p_worker, 10) t
$$;

CREATE FUNCTION pg_temp.holder(p_target text)
RETURNS bigint LANGUAGE sql AS $$
    SELECT job_id FROM workflow.target_locks WHERE target = p_target
$$;

\o /dev/null
SELECT workflow.create_workflow('{"name": "ct_one", "chain": [{"name": "only", "task_type": "ct.one"}]}');
SELECT workflow.create_workflow('{"name": "ct_three", "chain": [
    {"name": "first", "task_type": "ct.a"},
    {"name": "second", "task_type": "ct.b"},
    {"name": "third", "sql": "select 3"}]}');
SELECT workflow.create_workflow('{"name": "ct_two", "chain": [
    {"name": "first", "task_type": "ct.t"}, {"name": "second", "task_type": "ct.t"}]}');
SELECT workflow.create_workflow('{"name": "ct_onerror", "chain": [{"name": "main", "task_type": "ct.main"}],
    "onerror": [{"name": "tidy", "task_type": "ct.tidy"}, {"name": "notify", "task_type": "ct.notify"}]}');
SELECT workflow.create_workflow('{"name": "ct_onerror_again", "max_attempts": 2,
    "chain": [{"name": "main", "task_type": "ct.main2"}],
    "onerror": [{"name": "tidy", "task_type": "ct.tidy2"}]}');
SELECT workflow.create_workflow('{"name": "ct_oncancel", "chain": [{"name": "main", "task_type": "ct.main3"}],
    "oncancel": [{"name": "undo", "task_type": "ct.undo"}]}');
\o

-------------------------------------------------------------------------------
-- (1) The last task: the job succeeds with the output as its result
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_one', '{"k": 1}') AS j1 \gset
SELECT job_id AS p1, lease AS l1, task AS t1 FROM workflow.poll_tasks('ct.one', 'w1') \gset
SELECT is(:p1::bigint, :j1::bigint, 'one task: poll_tasks hands out the job');
SELECT claimed_at AS c1 FROM workflow.jobs WHERE id = :j1 \gset

SELECT is(workflow.complete_task(:j1, :l1, '{"ok": true}'), true, 'one task: complete_task returns true');
SELECT is(pg_temp.st(:j1), 'succeeded chain/0 t1', 'one task: the job succeeded');
SELECT is((SELECT result FROM workflow.jobs WHERE id = :j1), '{"ok": true}'::jsonb,
          'one task: its result is the output');
SELECT is((SELECT row(lease, lease_expires_at, task_type, error, in_fallback)::text
             FROM workflow.jobs WHERE id = :j1), '(,,,,f)',
          'one task: lease, lease expiry, task type and error are cleared');
SELECT ok((SELECT finished_at >= now() FROM workflow.jobs WHERE id = :j1), 'one task: finished_at is set');
SELECT is((SELECT runner_id FROM workflow.jobs WHERE id = :j1), 'w1',
          'one task: the job keeps the worker that ran its last task');
SELECT results_eq(
    format($$SELECT job_attempt, phase::text, step, task, attempt, fallback, status, runner_id, lease,
                    started_at, output, error
               FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :j1),
    format($$VALUES (1, 'chain', 0, 'only', 1, false, 'succeeded', 'w1', %s::bigint,
                     %L::timestamptz, '{"ok": true}'::jsonb, NULL::jsonb)$$, :l1, :'c1'),
    'one task: one task run: succeeded, task, step, attempt, worker, lease, start = claim, output');
SELECT ok((SELECT finished_at >= started_at FROM workflow.task_runs WHERE job_id = :j1),
          'one task: the task run has its end time');

-- a NULL output, here by the two-argument call
SELECT workflow.create_job('ct_one') AS j2 \gset
SELECT job_id AS p2, lease AS l2 FROM workflow.poll_tasks('ct.one', 'w1') \gset
SELECT is(workflow.complete_task(:j2, :l2), true, 'NULL output: complete_task returns true');
SELECT is(pg_temp.st(:j2) || ' ' || coalesce((SELECT result FROM workflow.jobs WHERE id = :j2)::text, 'NULL'),
          'succeeded chain/0 t1 NULL', 'NULL output: the job succeeded with a NULL result');
SELECT is((SELECT status || ' ' || coalesce(output::text, 'NULL') FROM workflow.task_runs WHERE job_id = :j2),
          'succeeded NULL', 'NULL output: the task run is recorded without output');

-------------------------------------------------------------------------------
-- (2) Three tasks: external ct.a -> external ct.b -> sql
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_three', '{"n": 3}', run_at => now() - interval '1 hour') AS t \gset
SELECT is(pg_temp.polled('ct.b', 'w2'), '{}'::bigint[], 'three tasks: at the first task, ct.b workers get nothing');
SELECT job_id AS pa, lease AS la, task AS ta, input AS ia FROM workflow.poll_tasks('ct.a', 'w1') \gset
SELECT is(:'ta'::text, 'first', 'three tasks: a ct.a worker gets the first task');
SELECT is(:'ia'::jsonb -> 'results', '{}'::jsonb, 'three tasks: the first task has no earlier results');
SELECT claimed_at AS ca, started_at AS sa FROM workflow.jobs WHERE id = :t \gset

SELECT is(workflow.complete_task(:t, :la, '{"a": 1}'), true, 'three tasks: task 1 completed');
SELECT is(pg_temp.st(:t), 'queued chain/1 t1', 'three tasks: queued at the second task, first attempt');
SELECT is((SELECT row(task_type, runner_id, claimed_at, lease, lease_expires_at, in_fallback)::text
             FROM workflow.jobs WHERE id = :t), '(ct.b,,,,,f)',
          'three tasks: task type ct.b; worker, claim and lease cleared');
SELECT is((SELECT run_at FROM workflow.jobs WHERE id = :t), now(), 'three tasks: runnable from now');
SELECT is((SELECT row(result, error, finished_at)::text FROM workflow.jobs WHERE id = :t), '(,,)',
          'three tasks: no result, error or end time yet');
SELECT is((SELECT started_at FROM workflow.jobs WHERE id = :t), :'sa'::timestamptz,
          'three tasks: started_at is kept');
SELECT ok(:t NOT IN (SELECT workflow.next_jobs(0, 99)) AND :t IN (SELECT workflow.next_jobs(0, 99, 'ct.b')),
          'three tasks: listed in the ct.b queue, not in the in-server runners'' queue');
SELECT is(pg_temp.polled('ct.a', 'w1'), '{}'::bigint[], 'three tasks: a ct.a worker does not get the second task');

SELECT job_id AS pb, lease AS lb, task AS tb, attempt AS ab, input AS ib
  FROM workflow.poll_tasks('ct.b', 'w2') \gset
SELECT is(:pb::bigint, :t::bigint, 'three tasks: a ct.b worker gets the job');
SELECT is(:'tb'::text || ' ' || :ab, 'second 1', 'three tasks: its second task, first attempt');
SELECT is(:'ib'::jsonb -> 'results', '{"first": {"a": 1}}'::jsonb,
          'three tasks: the input of the second task has the first task''s output under results');
SELECT is(:'ib'::jsonb -> 'task', '{"name": "second", "attempt": 1}'::jsonb, 'three tasks: the input names the task');
SELECT is(:'ib'::jsonb #> '{job,params}', '{"n": 3}'::jsonb, 'three tasks: the input has the job''s params');
SELECT isnt(:lb::bigint, :la::bigint, 'three tasks: the second claim has a new lease');
SELECT claimed_at AS cb FROM workflow.jobs WHERE id = :t \gset

SELECT is(workflow.complete_task(:t, :lb, '"B"'), true, 'three tasks: task 2 completed');
SELECT is(pg_temp.st(:t), 'queued chain/2 t1', 'three tasks: queued at the third task');
SELECT is((SELECT row(task_type, runner_id, lease)::text FROM workflow.jobs WHERE id = :t), '(,,)',
          'three tasks: task type NULL (the in-server runners), no worker, no lease');
SELECT ok(:t IN (SELECT workflow.next_jobs(0, 99)), 'three tasks: listed for the in-server runners');
SELECT is(pg_temp.polled('ct.b', 'w2'), '{}'::bigint[], 'three tasks: no ct.b worker gets the SQL task');
SELECT is(workflow.job_context(j) -> 'results', '{"first": {"a": 1}, "second": "B"}'::jsonb,
          'three tasks: the context of the third task has both outputs')
  FROM workflow.jobs j WHERE id = :t;
SELECT results_eq(
    format($$SELECT step, task, attempt, status, runner_id, lease, started_at, output
               FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :t),
    format($$VALUES (0, 'first', 1, 'succeeded', 'w1', %s::bigint, %L::timestamptz, '{"a": 1}'::jsonb),
                    (1, 'second', 1, 'succeeded', 'w2', %s::bigint, %L::timestamptz, '"B"'::jsonb)$$,
           :la, :'ca', :lb, :'cb'),
    'three tasks: one task run per completed task, each with its worker, lease, claim time and output');

-- the in-server runner does the SQL task (run_job + _task_succeeded, as it does)
SELECT r.execution::text AS rx FROM workflow.run_job(:t, 'r1') r \gset
SELECT is(:'rx'::text, 'running', 'three tasks: an in-server runner claims the SQL task');
SELECT count(*) AS _ FROM (SELECT workflow._task_succeeded(j, '3', now())
                              FROM workflow.jobs j WHERE j.id = :t FOR UPDATE) s \gset
SELECT is(pg_temp.st(:t) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :t)::text,
          'succeeded chain/2 t1 3', 'three tasks: after the SQL task the job succeeded');

-------------------------------------------------------------------------------
-- (3) Repeats and refusals
-------------------------------------------------------------------------------

-- a finished job's worker reports again (j1 had an output, j2 none)
SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_one') AS j1 \gset
SELECT workflow.create_job('ct_one') AS j2 \gset
SELECT pg_temp.polled('ct.one', 'w3') AS _ \gset
SELECT (SELECT lease FROM workflow.jobs WHERE id = :j1) AS l1, (SELECT lease FROM workflow.jobs WHERE id = :j2) AS l2 \gset
SELECT workflow.complete_task(:j1, :l1, '{"ok": true}') AS _, workflow.complete_task(:j2, :l2) AS _ \gset
SELECT pg_temp.job(:j1) AS snap1 \gset
SELECT is(workflow.complete_task(:j1, :l1, '{"ok": true}'), false,
          'repeat: the same lease and output again returns false');
SELECT is(pg_temp.job(:j1), :'snap1'::jsonb, 'repeat: the job is unchanged');
SELECT is(pg_temp.runs(:j1), 1, 'repeat: no task run is added');
SELECT is(workflow.complete_task(:j2, :l2, NULL), false, 'repeat: a NULL output repeated is a repeat too');
SELECT throws_ok(format($$SELECT workflow.complete_task(%s, %s, '{"ok": false}')$$, :j1, :l1), '55000',
                 format('task of job %s was already completed under lease %s with another output', :j1, :l1),
                 'repeat: another output under the same lease is refused');
SELECT throws_ok(format($$SELECT workflow.complete_task(%s, %s, '{"x": 1}')$$, :j2, :l2), '55000',
                 format('task of job %s was already completed under lease %s with another output', :j2, :l2),
                 'repeat: an output where there was none is refused');
SELECT throws_ok(format($$SELECT workflow.complete_task(%s, %s)$$, :j1, :l1), '55000',
                 format('task of job %s was already completed under lease %s with another output', :j1, :l1),
                 'repeat: no output where there was one is refused');
SELECT is(pg_temp.job(:j1), :'snap1'::jsonb, 'repeat: the refused calls changed nothing');

-- a repeat of an earlier task while the job runs its next one under another lease
SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_three') AS r \gset
SELECT lease AS ra FROM workflow.poll_tasks('ct.a', 'w3') \gset
SELECT workflow.complete_task(:r, :ra, '"A"') AS _ \gset
SELECT lease AS rb FROM workflow.poll_tasks('ct.b', 'w3') \gset
SELECT pg_temp.job(:r) AS snapr \gset
SELECT is(workflow.complete_task(:r, :ra, '"A"'), false,
          'repeat: the first task''s report again, while the second runs, returns false');
SELECT is(pg_temp.job(:r), :'snapr'::jsonb, 'repeat: the running second task is not disturbed');
SELECT is(pg_temp.runs(:r), 1, 'repeat: still one task run');

-- wrong, stale and missing leases
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :r, :rb + 1000), '55000',
                 format('lease %s of job %s is no longer valid', :rb + 1000, :r),
                 'lease: a lease the job never had is refused');
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :r, -1), '55000',
                 format('lease %s of job %s is no longer valid', -1, :r),
                 'lease: a negative lease is refused');
SELECT is(pg_temp.job(:r), :'snapr'::jsonb, 'lease: the refused calls changed nothing');
SELECT is(pg_temp.runs(:r), 1, 'lease: and recorded no task run');
SELECT throws_ok(format('SELECT workflow.complete_task(%s, NULL)', :r), '22004', 'lease must not be null',
                 'lease: NULL is refused');
SELECT throws_ok(format('SELECT workflow.complete_task(NULL, %s)', :rb), '22004', 'job id must not be null',
                 'job id: NULL is refused');
SELECT throws_ok('SELECT workflow.complete_task(NULL, NULL)', '22004', 'lease must not be null',
                 'job id and lease NULL: refused');
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :r + 100000, :rb), '42704',
                 format('job %s does not exist', :r + 100000), 'job id: an unknown job');
SELECT is(workflow.complete_task(:r, :rb, '"B"'), true, 'lease: the current lease still completes the task');

-- a failed attempt's lease cannot complete the task, and the retry's can
SELECT pg_temp.reset() \gset
SELECT workflow.create_workflow('{"name": "ct_retry", "chain": [{"name": "try", "task_type": "ct.retry", "attempts": 2}]}') AS _ \gset
SELECT workflow.create_job('ct_retry') AS f \gset
SELECT lease AS fl1 FROM workflow.poll_tasks('ct.retry', 'w4') \gset
SELECT is(workflow.fail_task(:f, :fl1, 'flaky'), true, 'failed attempt: the worker reports a failure');
UPDATE workflow.jobs SET run_at = now() WHERE id = :f;              -- the retry's delay ends
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :f, :fl1), '55000',
                 format('lease %s of job %s is no longer valid', :fl1, :f),
                 'failed attempt: its lease cannot complete the task afterwards');
SELECT lease AS fl2, attempt AS fa2 FROM workflow.poll_tasks('ct.retry', 'w4') \gset
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :f, :fl1), '55000',
                 format('lease %s of job %s is no longer valid', :fl1, :f),
                 'failed attempt: nor while the retry runs under a new lease');
SELECT is(workflow.complete_task(:f, :fl2, '"second time"'), true, 'retry: its lease completes the task');
SELECT results_eq(
    format($$SELECT attempt, status, lease, output FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :f),
    format($$VALUES (1, 'failed', %s::bigint, NULL::jsonb), (2, 'succeeded', %s::bigint, '"second time"'::jsonb)$$,
           :fl1, :fl2),
    'retry: the task run of the second attempt is attempt 2');
SELECT is(pg_temp.st(:f) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :f)::text,
          'succeeded chain/0 t2 "second time"', 'retry: the job succeeded at the task''s second attempt');

-------------------------------------------------------------------------------
-- (4) A job with a target
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_one', target => 'T1', run_at => now() - interval '2 minutes') AS g1 \gset
SELECT workflow.create_job('ct_one', target => 'T1', run_at => now() - interval '1 minute') AS g2 \gset
SELECT job_id AS pg1, lease AS gl1 FROM workflow.poll_tasks('ct.one', 'w5') \gset
SELECT is(:pg1::bigint, :g1::bigint, 'target: the first job of the target is handed out');
SELECT is(pg_temp.holder('T1'), :g1::bigint, 'target: it holds the target');
SELECT is(pg_temp.polled('ct.one', 'w6'), '{}'::bigint[], 'target: the other job of the target waits');
SELECT is(workflow.complete_task(:g1, :gl1, '"g1"'), true, 'target: complete_task returns true');
SELECT is(pg_temp.st(:g1) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :g1)::text,
          'succeeded chain/0 t1 "g1"', 'target: the job succeeded with its output');
SELECT is(pg_temp.holder('T1'), NULL, 'target: the target lock is released');
SELECT is((SELECT row(lease, task_type)::text FROM workflow.jobs WHERE id = :g1), '(,)',
          'target: lease and task type cleared');
SELECT is((SELECT task || ' ' || status || ' ' || runner_id || ' ' || output::text
             FROM workflow.task_runs WHERE job_id = :g1), 'only succeeded w5 "g1"', 'target: the task run');
SELECT is(workflow.complete_task(:g1, :gl1, '"g1"'), false, 'target: a repeat returns false');
SELECT is(pg_temp.polled('ct.one', 'w6'), ARRAY[:g2]::bigint[], 'target: the next job of the target is handed out');
SELECT is(pg_temp.holder('T1'), :g2::bigint, 'target: and holds the target now');

-- between two tasks the job keeps its target
SELECT workflow.create_job('ct_two', '{}', target => 'T2') AS h \gset
SELECT lease AS hl1 FROM workflow.poll_tasks('ct.t', 'w7') \gset
SELECT is(workflow.complete_task(:h, :hl1, '"one"'), true, 'target: the first of two tasks completed');
SELECT is(pg_temp.st(:h) || ' ' || (SELECT task_type FROM workflow.jobs WHERE id = :h),
          'queued chain/1 t1 ct.t', 'target: queued at the second task');
SELECT is(pg_temp.holder('T2'), :h::bigint, 'target: the target is still held between the tasks');
SELECT lease AS hl2, input AS hi2 FROM workflow.poll_tasks('ct.t', 'w7') \gset
SELECT is(:'hi2'::jsonb -> 'results', '{"first": "one"}'::jsonb, 'target: the second task sees the first output');
SELECT is(workflow.complete_task(:h, :hl2, '"two"'), true, 'target: the second task completed');
SELECT is(pg_temp.st(:h) || ' ' || coalesce(pg_temp.holder('T2')::text, 'free'), 'succeeded chain/1 t1 free',
          'target: at the end the job succeeded and released the target');

-------------------------------------------------------------------------------
-- (5) workflow.max_payload_size
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_one') AS big \gset
SELECT lease AS bl FROM workflow.poll_tasks('ct.one', 'w8') \gset
SELECT pg_temp.job(:big) AS snapbig \gset
SET LOCAL workflow.max_payload_size = 1;        -- kB
SELECT throws_ok(format($$SELECT workflow.complete_task(%s, %s, jsonb_build_object('blob', repeat('x', 2048)))$$,
                        :big, :bl), '54000', 'payload too large: output',
                 'payload: an output over workflow.max_payload_size is refused');
SELECT is(pg_temp.st(:big), 'running chain/0 t1', 'payload: the job stays running');
SELECT is(pg_temp.job(:big), :'snapbig'::jsonb, 'payload: the job is unchanged (same lease)');
SELECT is(pg_temp.runs(:big), 0, 'payload: no task run is recorded');
SELECT is(workflow.complete_task(:big, :bl, jsonb_build_object('blob', repeat('x', 500))), true,
          'payload: an output under the limit is taken');
RESET workflow.max_payload_size;
SELECT is(pg_temp.st(:big), 'succeeded chain/0 t1', 'payload: the job then succeeded');

-------------------------------------------------------------------------------
-- (6) The worker's heartbeat
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_one') AS k1 \gset
SELECT workflow.create_job('ct_one') AS k2 \gset
SELECT is(pg_temp.polled('ct.one', 'hb'), ARRAY[:k1, :k2]::bigint[], 'heartbeat: the worker polled two tasks');
SELECT (SELECT lease FROM workflow.jobs WHERE id = :k1) AS kl1, (SELECT lease FROM workflow.jobs WHERE id = :k2) AS kl2 \gset
SELECT is((SELECT idle::text || ' ' || running_jobs || ' ' || current_job FROM workflow.runner_status WHERE id = 'hb'),
          format('false 2 %s', :k1), 'heartbeat: runner_status: while it holds tasks the worker is not idle');
-- make it look silent for an hour: the completion must record its heartbeat
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'hb';

SELECT is(workflow.complete_task(:k1, :kl1, '1'), true, 'heartbeat: the first task completed');
SELECT is((SELECT kind || ' ' || (active_at = now()) FROM workflow.runners WHERE id = 'hb'), 'external true',
          'heartbeat: complete_task records it (kind external, active_at = now())');
SELECT is((SELECT idle::text || ' ' || running_jobs || ' ' || current_job FROM workflow.runner_status WHERE id = 'hb'),
          format('false 1 %s', :k2), 'heartbeat: runner_status: still not idle, holding the other task');
SELECT ctid AS hbctid FROM workflow.runners WHERE id = 'hb' \gset
SELECT is(workflow.complete_task(:k2, :kl2, '2'), true, 'heartbeat: the second task completed');
SELECT is((SELECT ctid FROM workflow.runners WHERE id = 'hb'), :'hbctid'::tid,
          'heartbeat: the second completion in the transaction does not write the runners row again');
SELECT results_eq($$SELECT id, kind, active_at = now() FROM workflow.runners$$,
                  $$VALUES ('hb'::text, 'external'::text, true)$$,
                  'heartbeat: one runners row: the worker, external, seen now');
SELECT is((SELECT idle::text || ' ' || running_jobs || ' ' || coalesce(current_job::text, '-')
             FROM workflow.runner_status WHERE id = 'hb'),
          'true 0 -', 'heartbeat: runner_status: idle once it holds no task');
SELECT ok((SELECT alive FROM workflow.runner_status WHERE id = 'hb'), 'heartbeat: runner_status: alive');

-- a worker unknown to workflow.runners (removed after its poll) is registered
SELECT workflow.create_job('ct_one') AS k3 \gset
SELECT lease AS kl3 FROM workflow.poll_tasks('ct.one', 'hb2') \gset
DELETE FROM workflow.runners WHERE id = 'hb2';
SELECT is(workflow.complete_task(:k3, :kl3), true, 'heartbeat: a task of a worker without runners row completed');
SELECT is((SELECT kind || ' ' || (active_at = now()) FROM workflow.runners WHERE id = 'hb2'), 'external true',
          'heartbeat: the worker is registered as external');

-- the general path (a target) records it too
SELECT workflow.create_job('ct_one', target => 'T3') AS k4 \gset
SELECT lease AS kl4 FROM workflow.poll_tasks('ct.one', 'hb3') \gset
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'hb3';
SELECT is(workflow.complete_task(:k4, :kl4), true, 'heartbeat: a task of a job with a target completed');
SELECT is((SELECT kind || ' ' || (active_at = now()) FROM workflow.runners WHERE id = 'hb3'), 'external true',
          'heartbeat: recorded by the general path too');

-- a repeat records nothing
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'hb3';
SELECT is(workflow.complete_task(:k4, :kl4), false, 'heartbeat: a repeat returns false');
SELECT is((SELECT active_at FROM workflow.runners WHERE id = 'hb3'), now() - interval '1 hour',
          'heartbeat: a repeat is no heartbeat');

-- a heartbeat undone by a rolled-back savepoint is recorded again by the
-- next completion of the transaction
SELECT workflow.create_job('ct_one') AS k5 \gset
SELECT workflow.create_job('ct_one') AS k6 \gset
SELECT is(pg_temp.polled('ct.one', 'hb4'), ARRAY[:k5, :k6]::bigint[], 'heartbeat: the worker polled two more tasks');
SELECT (SELECT lease FROM workflow.jobs WHERE id = :k5) AS kl5, (SELECT lease FROM workflow.jobs WHERE id = :k6) AS kl6 \gset
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'hb4';
SAVEPOINT before_k5;
SELECT workflow.complete_task(:k5, :kl5) AS done_k5 \gset
ROLLBACK TO SAVEPOINT before_k5;
SELECT is((SELECT active_at FROM workflow.runners WHERE id = 'hb4'), now() - interval '1 hour',
          'heartbeat: the rolled-back completion took its heartbeat with it');
SELECT is(workflow.complete_task(:k6, :kl6), true, 'heartbeat: the next task completed after the rollback');
SELECT is((SELECT active_at FROM workflow.runners WHERE id = 'hb4'), now(),
          'heartbeat: recorded again after the rolled-back one');

-------------------------------------------------------------------------------
-- (7) The onerror and oncancel chains
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('ct_onerror', '{"o": 1}') AS e \gset
SELECT lease AS el0 FROM workflow.poll_tasks('ct.main', 'w9') \gset
SELECT is(workflow.fail_task(:e, :el0, 'broken', false), true, 'onerror: the chain task fails for good');
SELECT is(pg_temp.st(:e) || ' ' || (SELECT task_type FROM workflow.jobs WHERE id = :e),
          'queued onerror/0 t1 ct.tidy', 'onerror: queued at the onerror chain''s external task');
SELECT (SELECT error FROM workflow.jobs WHERE id = :e) AS eerr \gset
SELECT is(:'eerr'::jsonb ->> 'message', 'broken', 'onerror: the job has the chain task''s error');
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :e, :el0), '55000',
                 format('lease %s of job %s is no longer valid', :el0, :e),
                 'onerror: the failed task''s lease cannot complete it');

SELECT lease AS el1, task AS et1 FROM workflow.poll_tasks('ct.tidy', 'w9') \gset
SELECT is(:'et1'::text, 'tidy', 'onerror: a ct.tidy worker gets the onerror task');
SELECT is(workflow.complete_task(:e, :el1, '"tidied"'), true, 'onerror: its first task completed');
SELECT is(pg_temp.st(:e) || ' ' || (SELECT task_type FROM workflow.jobs WHERE id = :e),
          'queued onerror/1 t1 ct.notify', 'onerror: queued at the onerror chain''s second task');
SELECT lease AS el2, input AS ei2 FROM workflow.poll_tasks('ct.notify', 'w9') \gset
SELECT is(:'ei2'::jsonb -> 'results', '{"tidy": "tidied"}'::jsonb,
          'onerror: the second onerror task sees the first one''s output');
SELECT is(workflow.complete_task(:e, :el2, '"notified"'), true, 'onerror: its last task completed');
SELECT is(pg_temp.st(:e), 'failed onerror/1 t1', 'onerror: at the end of the onerror chain the job failed');
SELECT is((SELECT row(error = :'eerr'::jsonb, result, lease, task_type, finished_at >= now())::text
             FROM workflow.jobs WHERE id = :e), '(t,,,,t)',
          'onerror: the error is the chain task''s; no result, lease or task type; finished_at set');
SELECT results_eq(
    format($$SELECT phase::text, step, task, status, output FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :e),
    $$VALUES ('chain', 0, 'main', 'failed', NULL::jsonb), ('onerror', 0, 'tidy', 'succeeded', '"tidied"'::jsonb),
             ('onerror', 1, 'notify', 'succeeded', '"notified"'::jsonb)$$,
    'onerror: the task runs of the chain and of the onerror chain');
SELECT is(workflow.complete_task(:e, :el2, '"notified"'), false, 'onerror: a repeat after the end returns false');

-- with a whole-job attempt left, the end of the onerror chain queues the next attempt
SELECT workflow.create_job('ct_onerror_again') AS e2 \gset
SELECT lease AS e2l0 FROM workflow.poll_tasks('ct.main2', 'w9') \gset
SELECT workflow.fail_task(:e2, :e2l0, 'broken again', false) AS _ \gset
SELECT lease AS e2l1 FROM workflow.poll_tasks('ct.tidy2', 'w9') \gset
SELECT is(workflow.complete_task(:e2, :e2l1, '"tidied"'), true, 'onerror, attempts left: the onerror task completed');
SELECT is((SELECT format('%s %s/%s t%s a%s %s %s', execution, phase, step, task_attempt, attempt, task_type,
                         error ->> 'message') FROM workflow.jobs WHERE id = :e2),
          'queued chain/0 t1 a2 ct.main2 broken again',
          'onerror, attempts left: queued at the first task for the second job attempt, error kept');
SELECT ok((SELECT run_at > now() FROM workflow.jobs WHERE id = :e2), 'onerror, attempts left: after the job backoff');

-- oncancel: an external task of the oncancel chain ends the job canceled
SELECT workflow.create_job('ct_oncancel') AS x \gset
SELECT lease AS xl0 FROM workflow.poll_tasks('ct.main3', 'w9') \gset
SELECT ok(workflow.cancel_job(:x, 'stop'), 'oncancel: the running job is canceled');
SELECT throws_ok(format('SELECT workflow.complete_task(%s, %s)', :x, :xl0), '55000',
                 format('lease %s of job %s is no longer valid', :xl0, :x),
                 'oncancel: the canceled task can no longer be completed');
SELECT lease AS xl1 FROM workflow.poll_tasks('ct.undo', 'w9') \gset
SELECT is(workflow.complete_task(:x, :xl1, '"undone"'), true, 'oncancel: the oncancel task completed');
SELECT is(pg_temp.st(:x) || ' ' || coalesce((SELECT result FROM workflow.jobs WHERE id = :x)::text, 'NULL'),
          'canceled oncancel/0 t1 NULL', 'oncancel: the job ends canceled, without result');

SELECT * FROM finish();
ROLLBACK;
