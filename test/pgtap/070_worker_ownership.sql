-- 070_worker_ownership.sql: what a workflow_worker may do to the work of
-- other workers (README "Security"):
--
--   wa, wb   LOGIN roles, members of workflow_worker
--   wadm     LOGIN role, member of workflow_admin
--
-- (1) Runner ids belong to the role that registered them: wb can neither
--     register, heartbeat, claim, finish nor poll under wa's ids (42501);
--     an administrator can.
-- (2) The ids and kinds of the in-server workers (runner-N, sweeper, rows
--     of kind runner or sweeper) are refused to every SQL caller, the
--     superuser and administrators included (42501), and their rows are
--     left alone.
-- (3) A task is reported only under the role that claimed it: with the
--     right lease, wb still cannot complete (one by one or in a batch),
--     fail, extend or requeue a task wa polled (42501), and nothing
--     changes.
-- (4) Leases are random: no lease of 20 claims is within 100 of another,
--     and consecutive ones are far apart.
-- (5) User-given intervals are bounded (0 to 100 years, 22023) and change
--     nothing when refused; a definition whose timeouts are beyond what a
--     timestamp holds does not make the claim of its tasks fail.
--
-- Everything, roles included, is created inside the test transaction and
-- rolled back.  No in-server runner executes jobs in this cluster
-- (workflow.runners = 0); the file plays every worker itself.

BEGIN;

SET LOCAL search_path = public, pg_catalog;

SELECT plan(63);

-------------------------------------------------------------------------------
-- Roles and helpers
-------------------------------------------------------------------------------

CREATE ROLE wa LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE wb LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE wadm LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_worker TO wa, wb;
GRANT workflow_admin TO wadm;

-- Run p_sql as p_role and keep its effects; the first column of its first
-- row as text.  An error is not caught: the setup must work.
CREATE FUNCTION pg_temp.as_role(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_sql INTO r;
    RESET ROLE;
    RETURN r;
END
$$;

-- Run p_sql as p_role: 'ok' when it worked (effects kept), else its
-- SQLSTATE (effects rolled back).
CREATE FUNCTION pg_temp.sqlstate_as(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql;
        RESET ROLE;
        RETURN 'ok';
    EXCEPTION WHEN OTHERS THEN
        RESET ROLE;
        RETURN SQLSTATE;
    END;
END
$$;

-- The error message of p_sql run as p_role (NULL when it worked).
CREATE FUNCTION pg_temp.error_as(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql;
        RESET ROLE;
        RETURN NULL;
    EXCEPTION WHEN OTHERS THEN
        RESET ROLE;
        RETURN SQLERRM;
    END;
END
$$;

-- A job's state, runner and lease as one text.
CREATE FUNCTION pg_temp.claim_of(p_job bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT execution || '/' || coalesce(runner_id, '-') || '/' || coalesce(lease::text, '-')
           || '/' || coalesce(lease_expires_at::text, '-') || '/' || task_attempt
      FROM workflow.jobs WHERE id = p_job
$$;

SELECT workflow.create_workflow($${"name": "own_sql", "chain": [{"name": "s", "sql": "select 1"}]}$$) AS v1 \gset
SELECT workflow.create_workflow($${"name": "own_ext", "chain": [{"name": "t", "task_type": "own.t"}]}$$) AS v2 \gset

-------------------------------------------------------------------------------
-- (1) runner ids belong to the role that registered them
-------------------------------------------------------------------------------

SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('wa-1')$$), 'ok',
          'wa registers wa-1');
SELECT is((SELECT owner::text FROM workflow.runners WHERE id = 'wa-1'), 'wa',
          'wa-1 belongs to wa');
SELECT (SELECT started_at::text || pid FROM workflow.runners WHERE id = 'wa-1') AS wa1_row \gset
SELECT is(pg_temp.sqlstate_as('wb', $$SELECT workflow.register_runner('wa-1')$$), '42501',
          'wb cannot register wa-1: 42501');
SELECT is(pg_temp.error_as('wb', $$SELECT workflow.register_runner('wa-1')$$),
          'permission denied for runner "wa-1"', 'the message names the runner id');
SELECT is(pg_temp.sqlstate_as('wb', $$SELECT workflow.runner_active('wa-1')$$), '42501',
          'wb cannot heartbeat wa-1: 42501');
SELECT is((SELECT started_at::text || pid || owner::text FROM workflow.runners WHERE id = 'wa-1'),
          :'wa1_row' || 'wa', 'wa-1 is unchanged');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.runner_active('wa-1')$$), 'ok',
          'wa heartbeats wa-1');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('wa-1')$$), 'ok',
          'wa registers wa-1 again (a restart)');

SELECT workflow.create_job('own_sql') AS j1 \gset
SELECT is(pg_temp.sqlstate_as('wb', format($$SELECT workflow.run_job(%s, 'wa-1')$$, :j1)), '42501',
          'wb cannot claim a job under wa-1: 42501');
SELECT is(pg_temp.claim_of(:j1), 'queued/-/-/-/1', 'the job is still queued');
SELECT is(pg_temp.as_role('wa', format($$SELECT (workflow.run_job(%s, 'wa-1')).execution$$, :j1)),
          'running', 'wa claims it under wa-1');
SELECT is(pg_temp.sqlstate_as('wb', format($$SELECT workflow.finish_job(%s, 'wa-1', 'succeeded')$$, :j1)),
          '42501', 'wb cannot finish wa''s job naming wa-1: 42501');
SELECT is(pg_temp.sqlstate_as('wb', $$SELECT workflow.register_runner('wb-1')$$), 'ok',
          'wb registers wb-1');
SELECT is(pg_temp.sqlstate_as('wb', format($$SELECT workflow.finish_job(%s, 'wb-1', 'failed')$$, :j1)),
          '55000', 'nor under its own id: the job does not run for wb-1');
SELECT is((SELECT execution::text || '/' || runner_id FROM workflow.jobs WHERE id = :j1), 'running/wa-1',
          'the job still runs for wa-1');
SELECT is(pg_temp.as_role('wa', format($$SELECT (workflow.finish_job(%s, 'wa-1', 'succeeded', '{"ok": 1}')).execution$$, :j1)),
          'succeeded', 'wa finishes it');

-- an administrator acts for any runner
SELECT is(pg_temp.sqlstate_as('wadm', $$SELECT workflow.runner_active('wa-1')$$), 'ok',
          'an administrator heartbeats wa-1');
SELECT is((SELECT owner::text FROM workflow.runners WHERE id = 'wa-1'), 'wa',
          '... and wa-1 still belongs to wa');

-------------------------------------------------------------------------------
-- (2) the in-server workers' ids and kinds are nobody's from SQL
-------------------------------------------------------------------------------

SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('runner-1')$$), '42501',
          'a worker cannot register runner-1: 42501');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('sweeper')$$), '42501',
          'nor sweeper: 42501');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('wa-bg', 'runner')$$), '42501',
          'nor register as kind runner: 42501');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('wa-sw', 'sweeper')$$), '42501',
          'nor as kind sweeper: 42501');
SELECT is(pg_temp.sqlstate_as('wadm', $$SELECT workflow.register_runner('runner-2', 'runner')$$), '42501',
          'an administrator cannot either: 42501');
SELECT is(pg_temp.sqlstate_as(current_user, $$SELECT workflow.register_runner('runner-3', 'runner')$$), '42501',
          'nor a superuser from SQL: 42501');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT * FROM workflow.poll_tasks('own.t', 'runner-1')$$), '42501',
          'a worker cannot poll as runner-1: 42501');
SELECT workflow.create_job('own_sql') AS j2 \gset
SELECT is(pg_temp.sqlstate_as('wa', format($$SELECT workflow.run_job(%s, 'runner-4')$$, :j2)), '42501',
          'nor claim a job as runner-4: 42501');
SELECT is((SELECT count(*)::int FROM workflow.runners
            WHERE id IN ('runner-1', 'runner-2', 'runner-3', 'runner-4', 'wa-bg', 'wa-sw')),
          0, 'none of these registered anything');

-- the row of an in-server runner, as src/runner.c writes it
INSERT INTO workflow.runners (id, kind, pid, started_at, owner)
VALUES ('runner-1', 'runner', pg_backend_pid(), now() - interval '1 hour', to_regrole(current_user));
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT workflow.register_runner('runner-1')$$), '42501',
          'a worker cannot take over the in-server runner-1: 42501');
SELECT is(pg_temp.sqlstate_as('wadm', $$SELECT workflow.runner_active('runner-1')$$), '42501',
          'an administrator cannot heartbeat it: 42501');
SELECT is((SELECT kind || '/' || (pid = pg_backend_pid()) || '/' || (started_at = now() - interval '1 hour')
             FROM workflow.runners WHERE id = 'runner-1'),
          'runner/true/true', 'its row is unchanged (started_at and pid, which decide its jobs'' staleness)');
UPDATE workflow.jobs SET execution = 'running', runner_id = 'runner-1', lease = 42, claimed_at = now()
 WHERE id = :j2;
SELECT is(pg_temp.sqlstate_as('wadm', format($$SELECT workflow.finish_job(%s, 'runner-1', 'canceled')$$, :j2)),
          '42501', 'nobody finishes a job of runner-1 from SQL: 42501');
SELECT is(pg_temp.sqlstate_as('wa', format($$SELECT workflow.fail_task(%s, 42, 'x')$$, :j2)),
          '42501', 'nor reports it with its lease: 42501');
SELECT is(pg_temp.claim_of(:j2), 'running/runner-1/42/-/1', 'the job of runner-1 is untouched');

-------------------------------------------------------------------------------
-- (3) tasks are reported only by the role that claimed them
-------------------------------------------------------------------------------

SELECT count(workflow.create_job('own_ext', jsonb_build_object('n', i))) AS created FROM generate_series(1, 6) i \gset
CREATE TEMP TABLE polled_a AS SELECT 0 AS job_id, 0::bigint AS lease WHERE false;
GRANT ALL ON polled_a TO wa;
SELECT pg_temp.as_role('wa', $$WITH t AS (INSERT INTO polled_a SELECT job_id, lease
                                           FROM workflow.poll_tasks('own.t', 'wa-p', 4) RETURNING 1)
                               SELECT count(*) FROM t$$) AS polled \gset
SELECT is(:polled::int, 4, 'wa polls four tasks under wa-p');
SELECT is((SELECT owner::text FROM workflow.runners WHERE id = 'wa-p'), 'wa', 'wa-p belongs to wa');
SELECT is(pg_temp.sqlstate_as('wb', $$SELECT * FROM workflow.poll_tasks('own.t', 'wa-p', 1)$$), '42501',
          'wb cannot poll under wa-p: 42501');
SELECT (array_agg(job_id ORDER BY job_id))[1] AS t1, (array_agg(lease ORDER BY job_id))[1] AS l1,
       (array_agg(job_id ORDER BY job_id))[2] AS t2, (array_agg(lease ORDER BY job_id))[2] AS l2,
       (array_agg(job_id ORDER BY job_id))[3] AS t3, (array_agg(lease ORDER BY job_id))[3] AS l3,
       (array_agg(job_id ORDER BY job_id))[4] AS t4, (array_agg(lease ORDER BY job_id))[4] AS l4
  FROM polled_a \gset
SELECT pg_temp.claim_of(:t2) AS t2_before \gset
-- wa reports one first: this transaction has then recorded wa-p's heartbeat
-- for wa, which must not let wb through
SELECT is(pg_temp.as_role('wa', format('SELECT workflow.complete_task(%s, %s)', :t1, :l1)), 'true',
          'wa completes its task');
SELECT is(pg_temp.sqlstate_as('wb', format('SELECT workflow.complete_task(%s, %s)', :t2, :l2)), '42501',
          'wb cannot complete wa''s task with its lease: 42501');
SELECT is(pg_temp.sqlstate_as('wb', format('SELECT * FROM workflow.complete_tasks(ARRAY[%s], ARRAY[%s])', :t2, :l2)),
          '42501', 'nor in a batch: 42501');
SELECT is(pg_temp.sqlstate_as('wb', format($$SELECT workflow.fail_task(%s, %s, 'x')$$, :t2, :l2)), '42501',
          'nor fail it: 42501');
SELECT is(pg_temp.sqlstate_as('wb', format($$SELECT workflow.extend_task(%s, %s, '1 hour')$$, :t2, :l2)), '42501',
          'nor extend its lease: 42501');
SELECT is(pg_temp.sqlstate_as('wb', format($$SELECT workflow.requeue_task(%s, %s, '0')$$, :t2, :l2)), '42501',
          'nor requeue it: 42501');
SELECT is(pg_temp.claim_of(:t2), :'t2_before', 'the task is unchanged');
SELECT is((SELECT count(*)::int FROM workflow.task_runs WHERE job_id = :t2), 0, 'and nothing was recorded');

-- wb's own task and one of wa's in one batch: refused as a whole
SELECT pg_temp.as_role('wb', $$SELECT job_id || ',' || lease FROM workflow.poll_tasks('own.t', 'wb-p', 1)$$) AS b_task \gset
SELECT is(pg_temp.sqlstate_as('wb', format('SELECT * FROM workflow.complete_tasks(ARRAY[%s, %s], ARRAY[%s, %s])',
                                           split_part(:'b_task', ',', 1), :t2, split_part(:'b_task', ',', 2), :l2)),
          '42501', 'a batch with one task of another role is refused as a whole');
SELECT is((SELECT execution::text FROM workflow.jobs WHERE id = split_part(:'b_task', ',', 1)::bigint), 'running',
          '... and wb''s own task in it is not completed either');
SELECT is(pg_temp.as_role('wb', format('SELECT recorded FROM workflow.complete_tasks(ARRAY[%s], ARRAY[%s])',
                                       split_part(:'b_task', ',', 1), split_part(:'b_task', ',', 2))),
          'true', 'wb completes its own task');
-- the repeat of a completion is answered only to its role
SELECT is(pg_temp.sqlstate_as('wb', format('SELECT workflow.complete_task(%s, %s)', :t1, :l1)), '42501',
          'wb does not even get the answer to a repeat of wa''s completion: 42501');
-- an administrator may report for any worker
SELECT is(pg_temp.as_role('wadm', format($$SELECT workflow.extend_task(%s, %s, '1 hour') > now()$$, :t2, :l2)),
          'true', 'an administrator extends wa''s task');
SELECT is(pg_temp.as_role('wa', format($$SELECT workflow.complete_task(%s, %s, '{"by": "wa"}')$$, :t2, :l2)),
          'true', 'wa completes its second task');

-------------------------------------------------------------------------------
-- (4) leases are random
-------------------------------------------------------------------------------

SELECT count(workflow.create_job('own_sql')) AS created FROM generate_series(1, 20) \gset
CREATE TEMP TABLE claims AS
SELECT n, (workflow.run_job(id, 'own-r')).lease
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
          FROM workflow.jobs WHERE workflow = 'own_sql' AND execution = 'queued') q;
SELECT is((SELECT count(DISTINCT lease)::int FROM claims WHERE lease > 0), 20,
          '20 claims, 20 distinct positive leases');
SELECT is((SELECT count(*)::int FROM claims a JOIN claims b ON a.n < b.n
            WHERE abs(a.lease - b.lease) <= 100), 0,
          'no lease is within 100 of another');
SELECT cmp_ok((SELECT count(*)::int FROM claims a JOIN claims b ON b.n = a.n + 1
                WHERE abs(a.lease - b.lease) > 4294967296), '>=', 15,
              'consecutive claims'' leases are more than 2^32 apart (most of 19 pairs)');

-------------------------------------------------------------------------------
-- (5) user-given intervals are bounded; arithmetic saturates
-------------------------------------------------------------------------------

SELECT pg_temp.claim_of(:t3) AS t3_before \gset
SELECT is(pg_temp.sqlstate_as('wa', format($$SELECT workflow.requeue_task(%s, %s, '100 years 1 day')$$, :t3, :l3)),
          '22023', 'requeue_task: more than 100 years: 22023');
SELECT is(pg_temp.error_as('wa', format($$SELECT workflow.requeue_task(%s, %s, '296516 years 8 mons')$$, :t3, :l3)),
          'requeue delay must be between 0 and 100 years', 'requeue_task: the audit''s interval: the bound, no overflow');
SELECT is(pg_temp.sqlstate_as('wa', format($$SELECT workflow.requeue_task(%s, %s, '-1 s')$$, :t3, :l3)),
          '22023', 'requeue_task: negative: 22023');
SELECT is(pg_temp.sqlstate_as('wa', format($$SELECT workflow.extend_task(%s, %s, by => '296516 years 8 mons')$$, :t3, :l3)),
          '22023', 'extend_task: huge: 22023');
SELECT is(pg_temp.sqlstate_as('wa', format($$SELECT workflow.extend_task(%s, %s, by => '-1 s')$$, :t3, :l3)),
          '22023', 'extend_task: negative: 22023');
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT * FROM workflow.poll_tasks('own.t', 'wa-p', 1, '-178000000 years')$$),
          '22023', 'poll_tasks: a wait that overflows milliseconds: 22023');
SELECT is(pg_temp.claim_of(:t3), :'t3_before', 'none of it changed the task');
SELECT is(pg_temp.as_role('wa', format($$SELECT workflow.requeue_task(%s, %s, '100 years')$$, :t3, :l3)),
          'true', 'requeue_task: 100 years is accepted');

-- a definition stored before timeouts were bounded: its task's lease and
-- its job's deadline saturate at 100 years instead of failing the claim
-- of every task of the type
SELECT workflow.create_job('own_ext', '{"n": "far"}') AS far \gset
UPDATE workflow.tasks SET timeout = interval '200000 years'
 WHERE workflow_id = (SELECT workflow_id FROM workflow.jobs WHERE id = :far);
UPDATE workflow.workflows SET timeout = interval '200000 years'
 WHERE id = (SELECT workflow_id FROM workflow.jobs WHERE id = :far);
UPDATE workflow.jobs SET deadline = NULL WHERE id = :far;
SELECT is(pg_temp.sqlstate_as('wa', $$SELECT * FROM workflow.poll_tasks('own.t', 'wa-p', 10)$$), 'ok',
          'tasks of a definition with huge timeouts are claimed');
SELECT is((SELECT execution::text || '/' || (lease_expires_at <= clock_timestamp() + interval '100 years')
                  || '/' || (deadline <= clock_timestamp() + interval '100 years')
             FROM workflow.jobs WHERE id = :far),
          'running/true/true', 'its lease and deadline saturate at 100 years');

SELECT * FROM finish();
ROLLBACK;
