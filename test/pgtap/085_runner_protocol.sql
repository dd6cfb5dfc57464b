-- 085_runner_protocol.sql: node-workflow's runner protocol keeps the
-- guarantees of the other claims (README "Runner protocol"):
--   - run_job arms the job's deadline, and the sweeper times the job out
--     when it passes;
--   - cancel_job of a running job records the attempt in progress as a
--     'canceled' task run;
--   - pause_job parks a claimed job as waiting (a 'waiting' run) for
--     resume_job; only the runner that claimed it may, and only while it
--     runs;
--   - the reports of the external task protocol refuse a job whose current
--     task runs inside the database, even under its lease.
--
-- No background runner runs in the pgTAP cluster; one transaction, time
-- passing is a backdated deadline.

BEGIN;
SELECT plan(17);

SET LOCAL search_path = public, pg_catalog;

SELECT workflow.create_workflow('{"name": "rp85", "timeout": "1 hour",
    "chain": [{"name": "a", "sql": "select 1"}, {"name": "b", "sql": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "rp85_untimed",
    "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.register_runner('rp85-r1');
SELECT workflow.register_runner('rp85-r2');

-------------------------------------------------------------------------------
-- run_job arms the deadline
-------------------------------------------------------------------------------

SELECT workflow.create_job('rp85') AS j1 \gset
SELECT is((SELECT (r.deadline - r.claimed_at) FROM workflow.run_job(:j1, 'rp85-r1') r),
          interval '1 hour', 'run_job: the deadline is the claim plus the workflow''s timeout');
SELECT workflow.create_job('rp85_untimed') AS j2 \gset
SELECT is((SELECT (r.deadline - r.claimed_at) FROM workflow.run_job(:j2, 'rp85-r1') r),
          (SELECT w.timeout FROM workflow.workflows w WHERE w.name = 'rp85_untimed'),
          'run_job: a workflow without a timeout of its own has the default one');

-- time passes: the deadline is behind us, and the sweeper times the job out
UPDATE workflow.jobs SET deadline = now() - interval '1 s' WHERE id = :j1;
SELECT is((SELECT handled FROM workflow._sweep_timeouts(100, '{}')), 1,
          'the sweeper takes on the job claimed with run_job past its deadline');
SELECT is((SELECT execution::text FROM workflow.jobs WHERE id = :j1), 'failed',
          'the job claimed with run_job timed out: failed');
SELECT is((SELECT error->>'message' FROM workflow.task_runs WHERE job_id = :j1 ORDER BY id DESC LIMIT 1),
          'job timed out', 'its running task has a failed run: job timed out');

-------------------------------------------------------------------------------
-- cancel_job of a running job: a 'canceled' run
-------------------------------------------------------------------------------

SELECT is((SELECT count(*) FROM workflow.task_runs WHERE job_id = :j2), 0::bigint,
          'a running job has no run of its task in progress');
SELECT ok(workflow.cancel_job(:j2, 'no longer needed'), 'cancel_job of the running job');
SELECT is((SELECT string_agg(status || ' ' || task || ' ' || (error->>'reason'), ',')
             FROM workflow.task_runs WHERE job_id = :j2),
          'canceled a no longer needed', 'the attempt in progress is a canceled run, with the reason');
SELECT is((SELECT execution::text FROM workflow.jobs WHERE id = :j2), 'canceled', 'the job is canceled');

-------------------------------------------------------------------------------
-- pause_job
-------------------------------------------------------------------------------

SELECT workflow.create_job('rp85') AS j3 \gset
SELECT throws_ok(format('SELECT workflow.pause_job(%s, %L)', :j3, 'rp85-r1'), '55000', NULL,
                 'pause_job of a queued job: 55000');
SELECT is((SELECT r.execution::text FROM workflow.run_job(:j3, 'rp85-r1') r), 'running', 'run_job');
SELECT throws_ok(format('SELECT workflow.pause_job(%s, %L)', :j3, 'rp85-r2'), '55000', NULL,
                 'pause_job by another runner: 55000');
SELECT is((SELECT format('%s %s', p.execution, p.run_at) FROM workflow.pause_job(:j3, 'rp85-r1') p),
          'waiting infinity', 'pause_job by its runner: waiting, until resume_job');
SELECT is((SELECT string_agg(status || ' ' || task, ',') FROM workflow.task_runs WHERE job_id = :j3),
          'waiting a', 'pause_job records a waiting run of the task');
SELECT ok(workflow.resume_job(:j3), 'resume_job of the paused job');
SELECT is((SELECT format('%s %s/%s', execution, phase, step) FROM workflow.jobs WHERE id = :j3),
          'queued chain/1', 'resumed: queued at its next task (the paused task''s result is the resume''s)');

-------------------------------------------------------------------------------
-- the external task protocol refuses a job at an in-database task
-------------------------------------------------------------------------------

SELECT workflow.create_job('rp85') AS j4 \gset
SELECT lease AS l4 FROM workflow.run_job(:j4, 'rp85-r1') \gset
SELECT throws_ok(format('SELECT workflow.fail_task(%s, %s, %L)', :j4, :l4, 'no'), '55000',
                 format('job %s is not at an external task', :j4),
                 'fail_task of a job claimed with run_job at its SQL task: 55000');

SELECT * FROM finish();
ROLLBACK;
