-- 020_protocol.sql: the runner protocol and the job API as clients see them:
-- claim order and next_jobs windows, not-before times, lock by target,
-- idempotency keys, cancel_job, retry_job, finish_job guards, stale runners
-- and jobs, and the job_summary / runner_status views.
--
-- One transaction, now() constant; no background runner.  Sections start
-- from an empty queue (pg_temp.reset) so that next_jobs lists only the jobs
-- of the section.  workflow.stale_after is a reload-only setting (it cannot
-- be SET in a session), so the stale tests backdate rows far beyond it.

BEGIN;
SELECT plan(98);

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

CREATE FUNCTION pg_temp.claim(p_id bigint, p_runner text DEFAULT 'r1')
RETURNS text LANGUAGE sql AS $$
    SELECT r.execution::text FROM workflow.run_job(p_id, p_runner) r
$$;

CREATE FUNCTION pg_temp.succeed(p_id bigint, p_out jsonb)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM (SELECT workflow._task_succeeded(j, p_out, now())
                   FROM workflow.jobs j WHERE j.id = p_id FOR UPDATE) s
$$;

CREATE FUNCTION pg_temp.fail(p_id bigint, p_msg text)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM (SELECT workflow._task_failed(j, jsonb_build_object('message', p_msg), now())
                   FROM workflow.jobs j WHERE j.id = p_id FOR UPDATE) s
$$;

CREATE FUNCTION pg_temp.run_ok(p_id bigint, p_out jsonb, p_runner text DEFAULT 'r1')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_temp.claim(p_id, p_runner) IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'job % could not be claimed', p_id;
    END IF;
    PERFORM pg_temp.succeed(p_id, p_out);
END
$$;

CREATE FUNCTION pg_temp.run_fail(p_id bigint, p_msg text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_temp.claim(p_id) IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'job % could not be claimed', p_id;
    END IF;
    PERFORM pg_temp.fail(p_id, p_msg);
END
$$;

CREATE FUNCTION pg_temp.st(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s/%s t%s', execution, phase, step, task_attempt)
      FROM workflow.jobs WHERE id = p_id
$$;

CREATE FUNCTION pg_temp.next(p_start int DEFAULT 0, p_stop int DEFAULT 99, p_queue text DEFAULT NULL)
RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(n ORDER BY o), '{}') FROM workflow.next_jobs(p_start, p_stop, p_queue)
        WITH ORDINALITY AS x(n, o)
$$;

CREATE FUNCTION pg_temp.try(p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

CREATE FUNCTION pg_temp.holder(p_target text)
RETURNS bigint LANGUAGE sql AS $$
    SELECT job_id FROM workflow.target_locks WHERE target = p_target
$$;

\o /dev/null
SELECT workflow.create_workflow('{"name": "pr_two", "chain": [
    {"name": "a", "sql": "select 1"}, {"name": "b", "sql": "select 2"}]}');
SELECT workflow.create_workflow('{"name": "pr_one", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "pr_three", "chain": [
    {"name": "a", "sql": "select 1"}, {"name": "b", "sql": "select 2"}, {"name": "c", "sql": "select 3"}]}');
SELECT workflow.create_workflow('{"name": "pr_oncancel", "chain": [{"name": "a", "sql": "select 1"}],
    "oncancel": [{"name": "undo", "sql": "select 2"}]}');
\o

-------------------------------------------------------------------------------
-- Claim order and next_jobs windows
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_one', run_at => now() - interval '1 hour') AS j1 \gset
SELECT workflow.create_job('pr_one', run_at => now() - interval '1 minute', priority => 5) AS j2 \gset
SELECT workflow.create_job('pr_one', run_at => now() - interval '2 hours') AS j3 \gset
SELECT workflow.create_job('pr_one', run_at => now() - interval '1 hour') AS j4 \gset
SELECT workflow.create_job('pr_one', run_at => now() + interval '1 hour', priority => 100) AS j5 \gset
SELECT workflow.create_job('pr_one', run_at => now() - interval '3 hours', priority => -1) AS j6 \gset

SELECT is(pg_temp.next(), ARRAY[:j2, :j3, :j1, :j4, :j6]::bigint[],
          'order: priority desc, then run_at, then id; a future run_at is not listed');
SELECT is(pg_temp.next(0, 0), ARRAY[:j2]::bigint[], 'window 0..0: the first job');
SELECT is(pg_temp.next(1, 2), ARRAY[:j3, :j1]::bigint[], 'window 1..2: the second and third (inclusive)');
SELECT is(pg_temp.next(3, 9), ARRAY[:j4, :j6]::bigint[], 'window 3..9: the rest');
SELECT is(pg_temp.next(5, 9), '{}'::bigint[], 'window past the end: empty');
SELECT is(pg_temp.claim(:j5), NULL, 'run_at in the future: run_job does not claim it');
SELECT is(pg_temp.st(:j5), 'queued chain/0 t1', 'run_at in the future: the job stays queued');
SELECT is(pg_temp.claim(:j2), 'running', 'run_job claims the first job');
SELECT isnt((SELECT lease FROM workflow.jobs WHERE id = :j2), NULL, 'a claim gets a lease');
SELECT is(pg_temp.claim(:j2, 'r2'), NULL, 'a claimed job cannot be claimed by another runner');
SELECT is((SELECT runner_id FROM workflow.jobs WHERE id = :j2), 'r1', 'the first claim stands');
SELECT is(pg_temp.next(), ARRAY[:j3, :j1, :j4, :j6]::bigint[], 'a claimed job leaves next_jobs');
SELECT is(pg_temp.claim(:j3, 'r2'), 'running', 'another runner claims the next job');
SELECT isnt((SELECT lease FROM workflow.jobs WHERE id = :j3), (SELECT lease FROM workflow.jobs WHERE id = :j2),
            'every claim has its own lease');
UPDATE workflow.jobs SET run_at = now() WHERE id = :j5;
SELECT is(pg_temp.next(0, 0), ARRAY[:j5]::bigint[], 'once due, the high-priority job comes first');
SELECT is(pg_temp.next(0, 9, 'payment'), '{}'::bigint[], 'an external queue does not list SQL jobs');

-------------------------------------------------------------------------------
-- Lock by target
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_two', target => 'T', run_at => now() - interval '3 minutes') AS t1 \gset
SELECT workflow.create_job('pr_two', target => 'T', run_at => now() - interval '2 minutes') AS t2 \gset
SELECT workflow.create_job('pr_one', target => 'U', run_at => now() - interval '1 minute') AS u1 \gset
SELECT workflow.create_job('pr_one', run_at => now() - interval '1 minute') AS n1 \gset

SELECT is(pg_temp.next(), ARRAY[:t1, :u1, :n1]::bigint[],
          'target: only the first job of a target is listed');
SELECT is(pg_temp.claim(:t2), NULL, 'target: a later job of the target cannot jump the queue');
SELECT is(pg_temp.claim(:t1), 'running', 'target: the first job of the target is claimed');
SELECT is(pg_temp.holder('T'), :t1::bigint, 'target: it holds the target');
SELECT is(pg_temp.next(), ARRAY[:u1, :n1]::bigint[], 'target: the held target blocks its other jobs');
SELECT is(pg_temp.claim(:t2), NULL, 'target: the other job of a held target cannot be claimed');
SELECT pg_temp.succeed(:t1, '"a"') \gset
SELECT is(pg_temp.st(:t1), 'queued chain/1 t1', 'target: between two tasks the holder is queued ...');
SELECT is(pg_temp.holder('T'), :t1::bigint, '... and still holds the target');
SELECT ok(:t1 IN (SELECT workflow.next_jobs(0, 99)) AND :t2 NOT IN (SELECT workflow.next_jobs(0, 99)),
          'target: the holder is listed, the other job is not');
SELECT is(pg_temp.claim(:t2), NULL, 'target: the other job still cannot be claimed between tasks');
SELECT is(pg_temp.claim(:t1), 'running', 'target: the holder claims its next task');
SELECT pg_temp.succeed(:t1, '"b"') \gset
SELECT is(pg_temp.st(:t1), 'succeeded chain/1 t1', 'target: the holder succeeded');
SELECT is(pg_temp.holder('T'), NULL, 'target: released at the end of the job');
SELECT is(pg_temp.next(), ARRAY[:t2, :u1, :n1]::bigint[], 'target: the next job of the target is listed');
SELECT is(pg_temp.claim(:t2), 'running', 'target: and can be claimed');
SELECT is(pg_temp.holder('T'), :t2::bigint, 'target: it holds the target now');

-- claim order within a target follows priority too
SELECT workflow.create_job('pr_one', target => 'V', run_at => now() - interval '2 minutes') AS v1 \gset
SELECT workflow.create_job('pr_one', target => 'V', run_at => now() - interval '1 minute', priority => 10) AS v2 \gset
SELECT ok(:v2 IN (SELECT workflow.next_jobs(0, 99)) AND :v1 NOT IN (SELECT workflow.next_jobs(0, 99)),
          'target: within a target the higher priority runs first');
SELECT is(pg_temp.claim(:v1), NULL, 'target: the lower-priority job waits');
SELECT pg_temp.run_ok(:v2, '"v2"') \gset
SELECT is(pg_temp.claim(:v1), 'running', 'target: then it runs');

-- a not-yet-due earlier job does not block the target
SELECT workflow.create_job('pr_one', target => 'W', run_at => now() + interval '1 hour', priority => 50) AS w1 \gset
SELECT workflow.create_job('pr_one', target => 'W', run_at => now() - interval '1 minute') AS w2 \gset
SELECT is(pg_temp.claim(:w2), 'running', 'target: a job not yet due does not hold up its target');

-- the target is released by every terminal state
SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_one', target => 'X') AS x1 \gset
SELECT pg_temp.claim(:x1) \gset
SELECT workflow.cancel_job(:x1) \gset
SELECT is(pg_temp.holder('X'), NULL, 'target: released when the job is canceled');
SELECT workflow.create_job('pr_one', target => 'X') AS x2 \gset
SELECT pg_temp.run_fail(:x2, 'no') \gset
SELECT is(pg_temp.st(:x2) || ' ' || coalesce(pg_temp.holder('X')::text, 'free'), 'failed chain/0 t1 free',
          'target: released when the job failed');
SELECT workflow.create_job('pr_one', target => 'X') AS x3 \gset
SELECT pg_temp.claim(:x3) \gset
SELECT workflow.finish_job(:x3, 'r1', 'succeeded') \gset
SELECT is(pg_temp.holder('X'), NULL, 'target: released by finish_job');

-------------------------------------------------------------------------------
-- Idempotency keys
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_one', '{"n": 1}', idempotency_key => 'order-42') AS k1 \gset
SELECT is(workflow.create_job('pr_one', '{"n": 1}', idempotency_key => 'order-42'), :k1::bigint,
          'idempotency: the same request with the same key returns the job');
SELECT is((SELECT count(*)::int FROM workflow.jobs WHERE idempotency_key = 'order-42'), 1,
          'idempotency: no duplicate job');
SELECT throws_ok($$SELECT workflow.create_job('pr_one', '{"n": 2}', idempotency_key => 'order-42')$$,
                 '23505', NULL, 'idempotency: the key with other params is an error');
SELECT throws_ok($$SELECT workflow.create_job('pr_two', '{"n": 1}', idempotency_key => 'order-42')$$,
                 '23505', NULL, 'idempotency: the key with another workflow is an error');
SELECT is((SELECT params FROM workflow.jobs WHERE id = :k1), '{"n": 1}'::jsonb,
          'idempotency: the existing job is not changed');
SELECT isnt(workflow.create_job('pr_one', idempotency_key => 'order-43'), :k1::bigint,
            'idempotency: another key, another job');
SELECT pg_temp.claim(:k1) \gset
SELECT is(workflow.create_job('pr_one', '{"n": 1}', idempotency_key => 'order-42'), :k1::bigint,
          'idempotency: a running job holds its key');
SELECT pg_temp.succeed(:k1, '"ok"') \gset
SELECT is(workflow.create_job('pr_one', '{"n": 1}', idempotency_key => 'order-42'), :k1::bigint,
          'idempotency: a finished job still holds its key');

-------------------------------------------------------------------------------
-- cancel_job
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_one') AS c1 \gset
SELECT ok(workflow.cancel_job(:c1, 'not needed'), 'cancel: a queued job without oncancel');
SELECT is(pg_temp.st(:c1), 'canceled chain/0 t1', 'cancel: it is canceled at once');
SELECT is((SELECT error ->> 'reason' FROM workflow.jobs WHERE id = :c1), 'not needed', 'cancel: the reason is kept');
SELECT isnt((SELECT finished_at FROM workflow.jobs WHERE id = :c1), NULL, 'cancel: finished_at is set');
SELECT is(workflow.cancel_job(:c1), false, 'cancel: canceling again returns false');
SELECT is(pg_temp.claim(:c1), NULL, 'cancel: a canceled job cannot be claimed');

SELECT workflow.create_job('pr_one') AS c2 \gset
SELECT pg_temp.claim(:c2) \gset
SELECT ok(workflow.cancel_job(:c2), 'cancel: a running job without oncancel');
SELECT is(pg_temp.st(:c2), 'canceled chain/0 t1', 'cancel: the running job is canceled');
SELECT throws_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'succeeded')$$, :c2), '55000', NULL,
                 'cancel: its runner can no longer finish it');

SELECT workflow.create_job('pr_oncancel') AS c3 \gset
SELECT pg_temp.claim(:c3) \gset
SELECT ok(workflow.cancel_job(:c3), 'cancel: a running job with oncancel');
SELECT is(pg_temp.st(:c3) || ' ' || coalesce((SELECT runner_id FROM workflow.jobs WHERE id = :c3), '-'),
          'queued oncancel/0 t1 -', 'cancel: its oncancel chain is queued for any runner');
SELECT is(workflow.cancel_job(:c3), false, 'cancel: canceling a job being canceled returns false');
SELECT ok(:c3 IN (SELECT workflow.next_jobs(0, 9)), 'cancel: the oncancel task is listed for the runners');
SELECT pg_temp.run_ok(:c3, '"undone"') \gset
SELECT is(pg_temp.st(:c3), 'canceled oncancel/0 t1', 'cancel: after oncancel the job is canceled');

-- the runner of the canceled task reports late: refused, nothing changes
SELECT workflow.create_job('pr_oncancel') AS c4 \gset
SELECT is(pg_temp.claim(:c4), 'running', 'cancel: task a of another job is running');
SELECT ok(workflow.cancel_job(:c4), 'cancel: the job is canceled while task a runs');
SELECT throws_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'succeeded')$$, :c4), '55000', NULL,
                 'cancel: the runner of task a can no longer finish the job');
SELECT is(pg_temp.st(:c4) || ' ' || coalesce((SELECT runner_id FROM workflow.jobs WHERE id = :c4), '-'),
          'queued oncancel/0 t1 -', 'cancel: the oncancel chain is still queued');
SELECT workflow.create_job('pr_one') AS c5 \gset
SELECT pg_temp.run_ok(:c5, '"done"') \gset
SELECT throws_ok(format('SELECT workflow.cancel_job(%s)', :c5), '55000', NULL,
                 'cancel: a succeeded job cannot be canceled');
SELECT is(pg_temp.st(:c5), 'succeeded chain/0 t1', 'cancel: it stays succeeded');

-------------------------------------------------------------------------------
-- retry_job
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_three') AS r \gset
SELECT pg_temp.run_ok(:r, '"A"') \gset
SELECT pg_temp.run_fail(:r, 'b broke') \gset
SELECT is(pg_temp.st(:r), 'failed chain/1 t1', 'retry: the job failed at task b');
SELECT throws_ok(format('SELECT workflow.retry_job(%s)', workflow.create_job('pr_one')), '55000', NULL,
                 'retry: a queued job cannot be retried');
SELECT ok(workflow.retry_job(:r), 'retry: retry_job of a failed job');
SELECT is(pg_temp.st(:r), 'queued chain/1 t1', 'retry: queued again at the failed task');
SELECT is((SELECT row(error, result, finished_at)::text FROM workflow.jobs WHERE id = :r), '(,,)',
          'retry: error, result and finished_at are cleared');
SELECT pg_temp.claim(:r) \gset
SELECT is(workflow.job_context(j) -> 'results', '{"a": "A"}'::jsonb, 'retry: the earlier results are kept')
  FROM workflow.jobs j WHERE id = :r;
SELECT pg_temp.succeed(:r, '"B"') \gset
SELECT pg_temp.run_ok(:r, '"C"') \gset
SELECT is(pg_temp.st(:r) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :r)::text,
          'succeeded chain/2 t1 "C"', 'retry: the job then succeeds');
SELECT results_eq(format($$SELECT task, status FROM workflow.task_runs WHERE job_id = %s ORDER BY id$$, :r),
                  $$VALUES ('a', 'succeeded'), ('b', 'failed'), ('b', 'succeeded'), ('c', 'succeeded')$$,
                  'retry: task a did not run again');
SELECT throws_ok(format('SELECT workflow.retry_job(%s)', :r), '55000', NULL,
                 'retry: a succeeded job cannot be retried');

SELECT workflow.create_job('pr_three') AS r \gset
SELECT pg_temp.run_ok(:r, '"A"') \gset
SELECT workflow.cancel_job(:r) \gset
SELECT ok(workflow.retry_job(:r), 'retry: retry_job of a canceled job');
SELECT is(pg_temp.st(:r), 'queued chain/1 t1', 'retry: a canceled job resumes at its first unfinished task');

-------------------------------------------------------------------------------
-- finish_job guards
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_two', target => 'F') AS f \gset
SELECT throws_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'succeeded')$$, :f), '55000', NULL,
                 'finish: a queued job cannot be finished');
SELECT pg_temp.claim(:f) \gset
SELECT throws_ok(format($$SELECT workflow.finish_job(%s, 'r2', 'succeeded')$$, :f), '55000', NULL,
                 'finish: only the runner that claimed the job finishes it');
SELECT throws_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'queued')$$, :f), '22023', NULL,
                 'finish: only to a terminal state');
SELECT is(pg_temp.st(:f), 'running chain/0 t1', 'finish: refused calls change nothing');
SELECT is((SELECT execution::text || ' ' || result::text FROM workflow.finish_job(:f, 'r1', 'succeeded', '{"ok": 1}')),
          'succeeded {"ok": 1}', 'finish: the runner finishes its job with a result');
SELECT isnt((SELECT finished_at FROM workflow.jobs WHERE id = :f), NULL, 'finish: finished_at is set');
SELECT is(pg_temp.holder('F'), NULL, 'finish: the target is released');
SELECT lives_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'succeeded', '{"ok": 1}')$$, :f),
                'finish: an identical repeated call is answered');
SELECT throws_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'failed')$$, :f), '55000', NULL,
                 'finish: a different call after the end is refused');
SELECT is(pg_temp.st(:f) || ' ' || (SELECT result FROM workflow.jobs WHERE id = :f)::text,
          'succeeded chain/0 t1 {"ok": 1}', 'finish: the job is unchanged');

SELECT workflow.create_job('pr_one') AS f \gset
SELECT pg_temp.claim(:f) \gset
SELECT is((SELECT execution::text FROM workflow.finish_job(:f, 'r1', 'failed', '{"why": "x"}')), 'failed',
          'finish: a job finished as failed');
SELECT lives_ok(format($$SELECT workflow.finish_job(%s, 'r1', 'failed', '{"why": "x"}')$$, :f),
                'finish: an identical repeated failed call with a result is answered too');

-------------------------------------------------------------------------------
-- inactive_runners and stale_jobs (rows backdated past workflow.stale_after)
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.register_runner('ext-old', 'external') \gset
SELECT workflow.register_runner('ext-new', 'external') \gset
-- in-server runners' rows, as src/runner.c writes them (SQL callers
-- register kind external only)
INSERT INTO workflow.runners (id, kind, pid, owner)
SELECT id, 'runner', pg_backend_pid(), to_regrole(current_user)
  FROM unnest(ARRAY['bg-gone', 'bg-live', 'bg-live-silent']) AS id;
UPDATE workflow.runners SET pid = -1 WHERE id = 'bg-gone';         -- no such process
UPDATE workflow.runners SET active_at = now() - interval '1 hour'
 WHERE id IN ('ext-old', 'bg-gone', 'bg-live-silent');

SELECT is(ARRAY(SELECT id FROM workflow.inactive_runners() ORDER BY id), ARRAY['bg-gone', 'ext-old'],
          'inactive: silent external runners and silent runners whose process is gone');
SELECT workflow.runner_active('ext-old') \gset
SELECT is(ARRAY(SELECT id FROM workflow.inactive_runners() ORDER BY id), ARRAY['bg-gone'],
          'inactive: a heartbeat makes a runner active again');
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'ext-old';

SELECT workflow.create_job('pr_one') AS s_old \gset
SELECT workflow.create_job('pr_one') AS s_new \gset
SELECT workflow.create_job('pr_one') AS s_ghost \gset
SELECT workflow.create_job('pr_one') AS s_lease \gset
SELECT workflow.create_job('pr_one') AS s_queued \gset
SELECT pg_temp.claim(:s_old, 'ext-old'), pg_temp.claim(:s_new, 'ext-new'),
       pg_temp.claim(:s_ghost, 'ghost'), pg_temp.claim(:s_lease, 'ext-new') \gset
-- claiming is a sign of life; make the silent ones silent again
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id IN ('ext-old', 'ghost');
DELETE FROM workflow.runners WHERE id = 'ghost';
UPDATE workflow.jobs SET started_at = now() - interval '1 hour', claimed_at = now() - interval '1 hour' WHERE id = :s_ghost;
UPDATE workflow.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :s_lease;

SELECT is(ARRAY(SELECT id FROM workflow.stale_jobs() ORDER BY id), ARRAY[:s_old, :s_ghost, :s_lease]::bigint[],
          'stale: jobs of an inactive runner, of an unknown runner, and with an expired lease');
UPDATE workflow.jobs SET lease_expires_at = now() + interval '1 minute' WHERE id = :s_lease;
SELECT ok(:s_lease NOT IN (SELECT id FROM workflow.stale_jobs()), 'stale: a lease not yet expired is not stale');

-------------------------------------------------------------------------------
-- runner_status
-------------------------------------------------------------------------------

UPDATE workflow.runners SET pid = pg_backend_pid(), active_at = now() WHERE id = 'bg-live';
SELECT results_eq(
    $$SELECT id, alive FROM workflow.runner_status ORDER BY id$$,
    $$VALUES ('bg-gone', false), ('bg-live', true), ('bg-live-silent', false),
             ('ext-new', true), ('ext-old', false)$$,
    'runner_status: alive = recent heartbeat (and, for in-server runners, a live process)');
SELECT is((SELECT current_job FROM workflow.runner_status WHERE id = 'ext-old'), :s_old::bigint,
          'runner_status: the current job of a runner');
SELECT is((SELECT kind FROM workflow.runner_status WHERE id = 'bg-live'), 'runner', 'runner_status: the kind');

-------------------------------------------------------------------------------
-- job_summary
-------------------------------------------------------------------------------

SELECT pg_temp.reset() \gset
SELECT workflow.create_job('pr_one') AS m1 \gset
SELECT workflow.create_job('pr_one') AS m2 \gset
SELECT workflow.create_job('pr_one') AS m3 \gset
SELECT workflow.create_job('pr_one') AS m4 \gset
SELECT workflow.create_job('pr_two') AS m5 \gset
SELECT pg_temp.run_ok(:m1, '1') \gset
SELECT pg_temp.run_ok(:m2, '2') \gset
SELECT workflow.cancel_job(:m3) \gset
SELECT pg_temp.claim(:m5) \gset
SELECT results_eq(
    $$SELECT workflow, execution::text, jobs::int FROM workflow.job_summary ORDER BY 1, 2$$,
    $$VALUES ('pr_one', 'canceled', 1), ('pr_one', 'queued', 1), ('pr_one', 'succeeded', 2),
             ('pr_two', 'running', 1)$$,
    'job_summary: counts per workflow and state');

SELECT * FROM finish();
ROLLBACK;
