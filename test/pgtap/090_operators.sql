-- 090_operators.sql: what operators see (README "Operations" and
-- "Configuration"):
--
--   alice, bob  LOGIN roles, members of workflow_user
--   carol       LOGIN role, member of workflow_admin, no superuser
--   wally       LOGIN role, member of workflow_worker
--
-- (1) workflow.target_locks ("why is my job still queued?"): a creator
--     reads which of its jobs holds each of its targets, another role sees
--     none of them, an administrator sees all; nobody writes it.
-- (2) workflow.runner_status, read by carol: the sweeper of this database
--     (a background worker, whose pg_stat_activity row carol may not see
--     in full) is alive; a row of an in-server worker whose process is not
--     there is not; the view has a column problem, NULL for both.
--     workflow._in_server_workers() gives carol the sweeper's pid.
-- (3) workflow._sweep_runners (the sweeper's pruning of external runners):
--     removes the external runners silent for longer than the retention
--     that hold no running job, oldest first and at most a batch; keeps a
--     silent one that holds a running job, a recent one and the in-server
--     workers' rows however old; a retention of 0 (or NULL) keeps all.
--     workflow.runner_retention is 1d by default, reloadable, in seconds.
--
-- One transaction, rolled back; no runner executes jobs in this cluster
-- (test/conf/pgtap.conf), the sweeper only writes heartbeats.

BEGIN;

SET LOCAL search_path = public, pg_catalog;

SELECT plan(28);

CREATE ROLE alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE bob LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE carol LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE wally LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO alice, bob;
GRANT workflow_admin TO carol;
GRANT workflow_worker TO wally;

-- Run p_sql as p_role and keep its effects; the first column of its first
-- row as text, or 'SQLSTATE: message' (effects rolled back).
CREATE FUNCTION pg_temp.try_as(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql INTO r;
        RESET ROLE;
        RETURN r;
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || SQLERRM;
    END;
END
$$;

-------------------------------------------------------------------------------
-- (1) target_locks
-------------------------------------------------------------------------------

SELECT pg_temp.try_as('alice', $$SELECT workflow.create_workflow(
    '{"name": "ops_ext", "chain": [{"name": "e", "task_type": "ops.ext"}]}')$$) AS _ \gset
SELECT pg_temp.try_as('bob', $$SELECT workflow.create_workflow(
    '{"name": "ops_bob", "chain": [{"name": "e", "task_type": "ops.ext"}]}')$$) AS _ \gset
SELECT pg_temp.try_as('alice', $$SELECT workflow.create_job('ops_ext', target => 'cust-1')$$) AS a1 \gset
SELECT pg_temp.try_as('alice', $$SELECT workflow.create_job('ops_ext', target => 'cust-1')$$) AS a2 \gset
SELECT pg_temp.try_as('bob', $$SELECT workflow.create_job('ops_bob', target => 'cust-1')$$) AS b1 \gset
SELECT is(pg_temp.try_as('wally', $$SELECT string_agg(t.job_id::text, ',' ORDER BY t.job_id)
                                      FROM workflow.poll_tasks('ops.ext', 'w-ops', 10) t$$),
          format('%s,%s', :a1, :b1), 'setup: a worker claims alice''s first job and bob''s; alice''s second waits for her target');

SELECT is(pg_temp.try_as('alice', $$SELECT string_agg(target || ':' || job_id, ',') FROM workflow.target_locks$$),
          format('cust-1:%s', :a1), 'target_locks: alice sees which of her jobs holds her target');
SELECT is(pg_temp.try_as('alice', format($$SELECT l.job_id FROM workflow.jobs j
                                             JOIN workflow.target_locks l ON l.owner = j.created_by AND l.target = j.target
                                            WHERE j.id = %s AND j.execution = 'queued'$$, :a2)),
          :'a1', 'target_locks: alice finds the job her queued job waits for');
SELECT is(pg_temp.try_as('bob', $$SELECT string_agg(target || ':' || job_id, ',') FROM workflow.target_locks$$),
          format('cust-1:%s', :b1), 'target_locks: bob sees only his own (targets are each role''s)');
SELECT is(pg_temp.try_as('carol', $$SELECT string_agg(owner || ':' || target || ':' || job_id, ',' ORDER BY owner::text)
                                      FROM workflow.target_locks$$),
          format('alice:cust-1:%s,bob:cust-1:%s', :a1, :b1), 'target_locks: an administrator sees every lock');
SELECT is(pg_temp.try_as('wally', $$SELECT count(*) FROM workflow.target_locks$$),
          '0', 'target_locks: a worker that created no job sees none');
SELECT is(pg_temp.try_as('alice', $$DELETE FROM workflow.target_locks RETURNING job_id$$),
          '42501: permission denied for table target_locks', 'target_locks: alice cannot delete a lock');
SELECT is(pg_temp.try_as('carol', $$INSERT INTO workflow.target_locks VALUES ('carol', 'x', 1) RETURNING job_id$$),
          '42501: permission denied for table target_locks', 'target_locks: nor can an administrator write it');

-------------------------------------------------------------------------------
-- (2) runner_status for an administrator who is no superuser
-------------------------------------------------------------------------------

-- the sweeper registers itself once the extension exists, then heartbeats
-- every second (also with workflow.enabled = off)
DO $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM workflow.runners
                           WHERE id = 'sweeper' AND active_at > clock_timestamp() - interval '5 s');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT ok(EXISTS (SELECT 1 FROM workflow.runners WHERE id = 'sweeper'), 'setup: the sweeper registered itself');
SELECT is(pg_temp.try_as('carol', $$SELECT count(backend_start) FROM pg_stat_activity
                                     WHERE backend_type = 'workflow sweeper'$$),
          '0', 'premise: carol cannot see when the sweeper''s backend started in pg_stat_activity');
SELECT is(pg_temp.try_as('carol', $$SELECT kind || ' ' || alive FROM workflow.runner_status WHERE id = 'sweeper'$$),
          'sweeper true', 'runner_status: carol sees the sweeper alive');
SELECT is(pg_temp.try_as('alice', $$SELECT kind || ' ' || alive FROM workflow.runner_status WHERE id = 'sweeper'$$),
          'sweeper true', 'runner_status: so does a user');
SELECT is(pg_temp.try_as('carol', $$SELECT pid FROM workflow._in_server_workers() WHERE id = 'sweeper'$$),
          (SELECT pid::text FROM pg_stat_activity WHERE backend_type = 'workflow sweeper'),
          '_in_server_workers: carol reads the sweeper''s pid from shared memory');
INSERT INTO workflow.runners (id, kind, pid, started_at, active_at, owner)
VALUES ('runner-7', 'runner', 0, now(), now(), current_user::regrole);
SELECT is(pg_temp.try_as('carol', $$SELECT alive::text || ' ' || coalesce(problem, '-') FROM workflow.runner_status
                                     WHERE id = 'runner-7'$$),
          'false -', 'runner_status: a row of an in-server worker whose process is not there is not alive');
SELECT is(pg_temp.try_as('carol', $$SELECT coalesce(problem, '-') FROM workflow.runner_status WHERE id = 'sweeper'$$),
          '-', 'runner_status: problem is NULL for a worker that runs');
SELECT is(pg_temp.try_as('carol', $$SELECT count(*) FROM workflow.runner_status WHERE problem IS NOT NULL$$),
          '0', 'runner_status: every worker that should run runs (workflow.runners = 0 here)');
SELECT is(pg_temp.try_as('wally', $$SELECT kind || ' ' || alive FROM workflow.runner_status WHERE id = 'sweeper'$$),
          'sweeper true', 'runner_status: and a worker');

-------------------------------------------------------------------------------
-- (3) pruning external runners
-------------------------------------------------------------------------------

SELECT is(current_setting('workflow.runner_retention'), '1d', 'workflow.runner_retention: 1d by default');
SELECT is((SELECT format('%s %s %s', context, unit, min_val) FROM pg_settings WHERE name = 'workflow.runner_retention'),
          'sighup s 0', 'workflow.runner_retention: reloadable, in seconds, 0 or more');

-- w-ops holds alice's and bob's tasks (1); the others hold nothing
SELECT is(pg_temp.try_as('wally', $$SELECT count(*) FROM (
              SELECT workflow.register_runner('w-old3') UNION ALL SELECT workflow.register_runner('w-old2')
              UNION ALL SELECT workflow.register_runner('w-old1') UNION ALL SELECT workflow.register_runner('w-new')) s$$),
          '4', 'setup: wally registers four more runner ids');
UPDATE workflow.runners SET active_at = now() - interval '3 days' WHERE id IN ('w-ops', 'w-old3');
UPDATE workflow.runners SET active_at = now() - interval '2 days' WHERE id = 'w-old2';
UPDATE workflow.runners SET active_at = now() - interval '25 hours' WHERE id = 'w-old1';
UPDATE workflow.runners SET active_at = now() - interval '23 hours' WHERE id = 'w-new';
-- an in-server worker's row, however old, is the sweeper's heartbeat's
UPDATE workflow.runners SET active_at = now() - interval '3 days' WHERE id = 'runner-7';

SELECT is(workflow._sweep_runners('0', 500), 0, 'prune: a retention of 0 keeps every runner');
SELECT is(workflow._sweep_runners(NULL, 500), 0, 'prune: so does NULL');
SELECT is(workflow._sweep_runners('1 day', 2), 2, 'prune: at most a batch');
SELECT is(ARRAY(SELECT id FROM workflow.runners WHERE id LIKE 'w-%' ORDER BY id),
          '{w-new,w-old1,w-ops}'::text[], 'prune: the oldest silent runners first');
SELECT is(workflow._sweep_runners('1 day', 500), 1, 'prune: then the rest');
SELECT is(ARRAY(SELECT id FROM workflow.runners WHERE id LIKE 'w-%' OR kind <> 'external' ORDER BY id),
          '{runner-7,sweeper,w-new,w-ops}'::text[],
          'prune: kept are the recent runner, the silent one that holds running jobs, and the in-server workers');
SELECT is(pg_temp.try_as('wally', $$SELECT count(*) FROM workflow.poll_tasks('ops.none', 'w-old1')$$),
          '0', 'prune: a worker whose id was removed polls again');
SELECT is((SELECT owner::text FROM workflow.runners WHERE id = 'w-old1'), 'wally',
          'prune: and has its id again, as its own');

SELECT * FROM finish();
ROLLBACK;
