-- 040_security.sql: the security model of the README
-- ("Security"), role by role:
--
--   alice, bob  LOGIN roles, members of workflow_user
--   carol       LOGIN role, member of workflow_admin
--   wally       LOGIN role, member of workflow_worker
--   nolog       NOLOGIN role, member of workflow_user
--
-- (1) Jobs belong to their creator: alice's jobs do not exist for bob in
--     any function (42704) and do not show in any table or view he reads;
--     alice and carol see and act on them.
-- (2) Workflows belong to their owner: bob cannot store a new version of
--     alice's workflow nor drop it (42501); carol can.
-- (3) The caller is exact: created_by is the current user at the call, also
--     inside a SECURITY DEFINER function of another role (src/api.c).
--     create_job refuses a role without LOGIN (42501).
-- (4) Each role gets its functions and no others: workflow_user not the
--     worker nor the admin functions, workflow_worker not the admin ones;
--     nobody but the extension owner runs an implementation function
--     (`_name(..., p_caller oid)`) directly; only a fixed set of `_`
--     helpers is granted at all.
-- (5) Nothing is writable by the three roles; nothing at all is granted to
--     PUBLIC (schema, functions, tables, views, sequences, types).
--
-- Everything, roles included, is created inside the test transaction and
-- rolled back.  Calls as another role go through pg_temp.as_role (effects
-- kept) and pg_temp.sqlstate_as (effects always rolled back); both set the
-- role only for the statement and are back to the caller afterwards.

BEGIN;

SET LOCAL search_path = public, pg_catalog;

SELECT plan(206);

-------------------------------------------------------------------------------
-- Roles
-------------------------------------------------------------------------------

CREATE ROLE alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE bob LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE carol LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE wally LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE nolog NOLOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO alice, bob, nolog;
GRANT workflow_admin TO carol;
GRANT workflow_worker TO wally;

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------

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

-- Run p_sql as p_role; 'ok: <first column>' when it worked (effects kept),
-- else 'SQLSTATE: message' (effects rolled back).
CREATE FUNCTION pg_temp.try_as(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql INTO r;
        RESET ROLE;
        RETURN 'ok: ' || coalesce(r, '<null>');
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || SQLERRM;
    END;
END
$$;

-- Run p_sql as p_role; its SQLSTATE, or 'ok' when it worked.  The effects
-- are always rolled back.
CREATE FUNCTION pg_temp.sqlstate_as(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_sql;
    RAISE EXCEPTION 'no error' USING ERRCODE = 'WF000';
EXCEPTION WHEN OTHERS THEN
    RETURN CASE WHEN SQLSTATE = 'WF000' THEN 'ok' ELSE SQLSTATE END;
END
$$;

-- The ids p_role sees in a query returning one bigint column, sorted.
CREATE FUNCTION pg_temp.ids_as(p_role name, p_sql text)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    r bigint[];
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE format('SELECT coalesce(array_agg(x ORDER BY x), ''{}'') FROM (%s) AS q(x)', p_sql) INTO r;
    RESET ROLE;
    RETURN r;
END
$$;

CREATE FUNCTION pg_temp.state(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT execution::text FROM workflow.jobs WHERE id = p_id
$$;

-------------------------------------------------------------------------------
-- The harness itself
-------------------------------------------------------------------------------

SELECT is(pg_temp.as_role('alice', 'SELECT current_user'), 'alice', 'harness: as_role runs as the role');
SELECT is(current_user::text, session_user::text, 'harness: and the caller is itself again afterwards');
SELECT is(pg_temp.sqlstate_as('bob', $$SELECT CASE WHEN current_user = 'bob' THEN 1/0 END$$), '22012',
          'harness: sqlstate_as runs as the role');
SELECT is(pg_temp.try_as('carol', 'SELECT current_user'), 'ok: carol', 'harness: try_as runs as the role');
SELECT is(current_user::text, session_user::text, 'harness: the caller is itself again after all of them');

-------------------------------------------------------------------------------
-- Workflows and jobs of alice and bob
-------------------------------------------------------------------------------

SELECT pg_temp.as_role('alice', $$SELECT workflow.create_workflow(
    '{"name": "sec_ext", "chain": [{"name": "ext", "task_type": "sec.ext"}]}')$$) AS _ \gset
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_workflow(
    '{"name": "sec_wait", "chain": [{"name": "w", "wait": "signal"}]}')$$) AS _ \gset
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_workflow(
    '{"name": "sec_drop1", "chain": [{"name": "a", "sql": "select 1"}]}')$$) AS _ \gset
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_workflow(
    '{"name": "sec_drop2", "chain": [{"name": "a", "sql": "select 1"}]}')$$) AS _ \gset
SELECT pg_temp.as_role('bob', $$SELECT workflow.create_workflow(
    '{"name": "sec_bob", "chain": [{"name": "ext", "task_type": "sec.bob"}]}')$$) AS _ \gset

SELECT is(ARRAY(SELECT name || ':' || owner::text FROM workflow.workflows
                 WHERE name LIKE 'sec\_%' ORDER BY name),
          '{sec_bob:bob,sec_drop1:alice,sec_drop2:alice,sec_ext:alice,sec_wait:alice}',
          'workflows: each is owned by the role that stored it');

SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_ext', '{"n": 1}')$$) AS aj1 \gset
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_wait', '{"n": 2}')$$) AS aj2 \gset
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_wait', '{"n": 3}')$$) AS aj3 \gset
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_ext', '{"n": 4}')$$) AS aj4 \gset
SELECT pg_temp.as_role('bob', $$SELECT workflow.create_job('sec_bob', '{"n": 5}')$$) AS bj1 \gset
SELECT pg_temp.as_role('alice', format('SELECT workflow.add_info(%s, %L)', :aj1, '{"from": "alice"}')) AS _ \gset
SELECT pg_temp.as_role('bob', format('SELECT workflow.add_info(%s, %L)', :bj1, '{"from": "bob"}')) AS _ \gset

-- the worker fails aj1 and bj1 (task_runs rows, failed jobs) and keeps aj4
-- running under runner "w-sec"
SELECT pg_temp.as_role('wally', format(
    $$SELECT workflow.fail_task(t.job_id, t.lease, 'boom', false)
        FROM workflow.poll_tasks('sec.ext', 'w-sec', 1) t WHERE t.job_id = %s$$, :aj1)) AS _ \gset
SELECT pg_temp.as_role('wally', format(
    $$SELECT workflow.fail_task(t.job_id, t.lease, 'boom', false)
        FROM workflow.poll_tasks('sec.bob', 'w-sec', 1) t WHERE t.job_id = %s$$, :bj1)) AS _ \gset
SELECT pg_temp.as_role('wally', $$SELECT t.job_id FROM workflow.poll_tasks('sec.ext', 'w-sec', 1) t$$) AS _ \gset
-- aj2 and aj3 wait for a signal (what their wait task does in a runner)
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity', started_at = now()
 WHERE id IN (:aj2, :aj3);

SELECT is(ARRAY[pg_temp.state(:aj1), pg_temp.state(:aj2), pg_temp.state(:aj3),
                pg_temp.state(:aj4), pg_temp.state(:bj1)],
          '{failed,waiting,waiting,running,failed}', 'setup: the jobs are in the states the tests need');
SELECT is(ARRAY(SELECT created_by::text FROM workflow.jobs WHERE id IN (:aj1, :aj2, :aj3, :aj4, :bj1) ORDER BY id),
          '{alice,alice,alice,alice,bob}', 'setup: each job is credited to its creator');

-------------------------------------------------------------------------------
-- (1) alice's jobs do not exist for bob
-------------------------------------------------------------------------------

SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.get_job(%s)', :aj1)), '42704',
          'bob: get_job of alice''s job: 42704');
SELECT is(pg_temp.try_as('bob', format('SELECT workflow.get_job(%s)', :aj1)),
          format('42704: job %s does not exist', :aj1),
          'bob: get_job says the job does not exist');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.cancel_job(%s)', :aj4)), '42704',
          'bob: cancel_job of alice''s running job: 42704');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.cancel_job(%s, %L)', :aj2, 'mine now')), '42704',
          'bob: cancel_job of alice''s waiting job: 42704');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.resume_job(%s)', :aj2)), '42704',
          'bob: resume_job of alice''s waiting job: 42704');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.resume_job(%s, NULL, %L)', :aj2, 'fail it')), '42704',
          'bob: resume_job with an error: 42704');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.retry_job(%s)', :aj1)), '42704',
          'bob: retry_job of alice''s failed job: 42704');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow.add_info(%s, %L)', :aj1, '{"from": "bob"}')), '42704',
          'bob: add_info to alice''s job: 42704');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT * FROM workflow.job_info(%s)', :aj1)), '42704',
          'bob: job_info of alice''s job: 42704');
SELECT is(pg_temp.try_as('bob', format('SELECT count(*) FROM workflow.job_info(%s)', :aj1)),
          format('42704: job %s does not exist', :aj1),
          'bob: job_info says the job does not exist');
-- the same message as for a job that does not exist at all
SELECT is(pg_temp.try_as('bob', 'SELECT workflow.get_job(999999999)'),
          '42704: job 999999999 does not exist', 'bob: the same answer as for a job that never existed');
SELECT is(ARRAY[pg_temp.state(:aj1), pg_temp.state(:aj2), pg_temp.state(:aj4)],
          '{failed,waiting,running}', 'bob: his attempts changed nothing');
SELECT is((SELECT count(*)::int FROM workflow.job_info WHERE job_id = :aj1), 1,
          'bob: no info of his was added to alice''s job');

-- what bob reads: only his own rows
SELECT is(pg_temp.ids_as('bob', 'SELECT id FROM workflow.jobs'), ARRAY[:bj1]::bigint[],
          'bob: workflow.jobs shows only his job');
SELECT is(pg_temp.ids_as('bob', 'SELECT job_id FROM workflow.task_runs'), ARRAY[:bj1]::bigint[],
          'bob: workflow.task_runs shows only the runs of his job');
SELECT is(pg_temp.ids_as('bob', 'SELECT job_id FROM workflow.job_info'), ARRAY[:bj1]::bigint[],
          'bob: workflow.job_info shows only the info of his job');
SELECT is(pg_temp.as_role('bob', $$SELECT string_agg(workflow || '/' || execution || '=' || jobs, ',' ORDER BY workflow, execution::text)
                                    FROM workflow.job_summary WHERE workflow LIKE 'sec\_%'$$),
          'sec_bob/failed=1', 'bob: workflow.job_summary counts only his job');
SELECT is(pg_temp.ids_as('bob', 'SELECT id FROM workflow.failed_jobs'), ARRAY[:bj1]::bigint[],
          'bob: workflow.failed_jobs shows only his failed job');
SELECT is(pg_temp.ids_as('bob', 'SELECT id FROM workflow.slow_jobs'), ARRAY[:bj1]::bigint[],
          'bob: workflow.slow_jobs shows only his job');
SELECT is(pg_temp.as_role('bob', $$SELECT format('%s %s', coalesce(current_job::text, 'none'), running_jobs)
                                    FROM workflow.runner_status WHERE id = 'w-sec'$$),
          'none 0', 'bob: workflow.runner_status does not show alice''s job as the runner''s current job');
SELECT is(pg_temp.ids_as('bob', 'SELECT id FROM workflow.jobs WHERE id IN (' || :aj1 || ',' || :aj4 || ')'),
          '{}'::bigint[], 'bob: not even when he asks for alice''s ids');

-- ... and alice only hers
SELECT is(pg_temp.ids_as('alice', 'SELECT id FROM workflow.jobs'), ARRAY[:aj1, :aj2, :aj3, :aj4]::bigint[],
          'alice: workflow.jobs shows her four jobs');
SELECT is(pg_temp.ids_as('alice', 'SELECT job_id FROM workflow.task_runs'), ARRAY[:aj1]::bigint[],
          'alice: workflow.task_runs shows the runs of her jobs');
SELECT is(pg_temp.ids_as('alice', 'SELECT job_id FROM workflow.job_info'), ARRAY[:aj1]::bigint[],
          'alice: workflow.job_info shows the info of her jobs');
SELECT is(pg_temp.as_role('alice', $$SELECT string_agg(workflow || '/' || execution || '=' || jobs, ',' ORDER BY workflow, execution::text)
                                      FROM workflow.job_summary WHERE workflow LIKE 'sec\_%'$$),
          'sec_ext/failed=1,sec_ext/running=1,sec_wait/waiting=2', 'alice: workflow.job_summary counts her jobs');
SELECT is(pg_temp.ids_as('alice', 'SELECT id FROM workflow.failed_jobs'), ARRAY[:aj1]::bigint[],
          'alice: workflow.failed_jobs shows her failed job');
SELECT is(pg_temp.ids_as('alice', 'SELECT id FROM workflow.slow_jobs'), ARRAY[:aj1, :aj2, :aj3, :aj4]::bigint[],
          'alice: workflow.slow_jobs shows her started jobs');
SELECT is(pg_temp.as_role('alice', $$SELECT format('%s %s', coalesce(current_job::text, 'none'), running_jobs)
                                      FROM workflow.runner_status WHERE id = 'w-sec'$$),
          format('%s 1', :aj4), 'alice: workflow.runner_status shows her job as the runner''s current job');

-- ... and carol everything
SELECT is(pg_temp.ids_as('carol', 'SELECT id FROM workflow.jobs WHERE id IN (' || concat_ws(',', :aj1, :aj2, :aj3, :aj4, :bj1) || ')'),
          ARRAY[:aj1, :aj2, :aj3, :aj4, :bj1]::bigint[], 'carol: workflow.jobs shows every role''s jobs');
SELECT is(pg_temp.ids_as('carol', 'SELECT job_id FROM workflow.task_runs WHERE job_id IN (' || concat_ws(',', :aj1, :aj2, :aj3, :aj4, :bj1) || ')'),
          ARRAY[:aj1, :bj1]::bigint[],
          'carol: workflow.task_runs shows every run');
SELECT is(pg_temp.ids_as('carol', 'SELECT job_id FROM workflow.job_info WHERE job_id IN (' || concat_ws(',', :aj1, :aj2, :aj3, :aj4, :bj1) || ')'),
          ARRAY[:aj1, :bj1]::bigint[],
          'carol: workflow.job_info shows all info');
SELECT is(pg_temp.as_role('carol', $$SELECT string_agg(workflow || '/' || execution || '=' || jobs, ',' ORDER BY workflow, execution::text)
                                      FROM workflow.job_summary WHERE workflow LIKE 'sec\_%'$$),
          'sec_bob/failed=1,sec_ext/failed=1,sec_ext/running=1,sec_wait/waiting=2',
          'carol: workflow.job_summary counts every role''s jobs');
SELECT is(pg_temp.ids_as('carol', $$SELECT id FROM workflow.failed_jobs WHERE workflow LIKE 'sec\_%'$$), ARRAY[:aj1, :bj1]::bigint[],
          'carol: workflow.failed_jobs shows every failed job');
SELECT is(pg_temp.ids_as('carol', $$SELECT id FROM workflow.slow_jobs WHERE workflow LIKE 'sec\_%'$$), ARRAY[:aj1, :aj2, :aj3, :aj4, :bj1]::bigint[],
          'carol: workflow.slow_jobs shows every started job');
SELECT is(pg_temp.as_role('carol', $$SELECT format('%s %s', coalesce(current_job::text, 'none'), running_jobs)
                                      FROM workflow.runner_status WHERE id = 'w-sec'$$),
          format('%s 1', :aj4), 'carol: workflow.runner_status shows the runner''s current job');

-- the views are security_invoker (else they would show the owner's view)
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind = 'v'
                   AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
                 ORDER BY 1),
          '{}'::text[], 'views: every view of the schema is security_invoker');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relname IN ('jobs', 'task_runs', 'job_info')
                   AND NOT (c.relrowsecurity) ORDER BY 1),
          '{}'::text[], 'tables: jobs, task_runs and job_info have row-level security enabled');

-------------------------------------------------------------------------------
-- (1) alice and carol act on alice's jobs
-------------------------------------------------------------------------------

SELECT is(pg_temp.try_as('alice', format($$SELECT workflow.get_job(%s)->>'execution'$$, :aj1)), 'ok: failed',
          'alice: get_job of her job');
SELECT is(pg_temp.try_as('alice', format($$SELECT jsonb_array_length(workflow.get_job(%s)->'tasks')$$, :aj1)), 'ok: 1',
          'alice: get_job shows its task run');
SELECT is(pg_temp.try_as('carol', format($$SELECT workflow.get_job(%s)->>'created_by'$$, :aj1)), 'ok: alice',
          'carol: get_job of alice''s job');
SELECT is(pg_temp.try_as('carol', format($$SELECT workflow.get_job(%s)->>'execution'$$, :bj1)), 'ok: failed',
          'carol: get_job of bob''s job');

SELECT is(pg_temp.try_as('alice', format('SELECT workflow.add_info(%s, %L)', :aj1, '{"from": "alice again"}')), 'ok: ',
          'alice: add_info to her job');
SELECT is(pg_temp.try_as('carol', format('SELECT workflow.add_info(%s, %L)', :aj1, '{"from": "carol"}')), 'ok: ',
          'carol: add_info to alice''s job');
SELECT is(pg_temp.as_role('alice', format($$SELECT string_agg(info->>'from', ',' ORDER BY created_at, info->>'from')
                                             FROM workflow.job_info(%s)$$, :aj1)),
          'alice,alice again,carol', 'alice: job_info of her job shows the three entries');
SELECT is(pg_temp.try_as('carol', format('SELECT count(*) FROM workflow.job_info(%s)', :aj1)), 'ok: 3',
          'carol: job_info of alice''s job');

SELECT is(pg_temp.try_as('alice', format('SELECT workflow.retry_job(%s)', :aj1)), 'ok: true',
          'alice: retry_job of her failed job');
SELECT is(pg_temp.state(:aj1), 'queued', 'alice: the job is queued again');
SELECT is(pg_temp.try_as('carol', format('SELECT workflow.cancel_job(%s, %L)', :aj1, 'by the admin')), 'ok: true',
          'carol: cancel_job of alice''s queued job');
SELECT is((SELECT format('%s %s %s', execution, error->>'canceled_by', created_by) FROM workflow.jobs WHERE id = :aj1),
          'canceled carol alice', 'carol: the job is canceled, by carol, and still alice''s');
SELECT is(pg_temp.try_as('carol', format('SELECT workflow.retry_job(%s)', :aj1)), 'ok: true',
          'carol: retry_job of alice''s canceled job');
SELECT is(pg_temp.try_as('alice', format('SELECT workflow.cancel_job(%s)', :aj1)), 'ok: true',
          'alice: cancel_job of her queued job');
SELECT is((SELECT format('%s %s', execution, error->>'canceled_by') FROM workflow.jobs WHERE id = :aj1),
          'canceled alice', 'alice: canceled by alice');

SELECT is(pg_temp.try_as('alice', format('SELECT workflow.resume_job(%s, %L)', :aj2, '{"by": "alice"}')), 'ok: true',
          'alice: resume_job of her waiting job');
SELECT is(pg_temp.try_as('carol', format('SELECT workflow.resume_job(%s, %L)', :aj3, '{"by": "carol"}')), 'ok: true',
          'carol: resume_job of alice''s waiting job');
SELECT is(ARRAY[pg_temp.state(:aj2), pg_temp.state(:aj3)], '{succeeded,succeeded}',
          'resume_job: both waiting jobs went on (their only task done)');
SELECT is(pg_temp.try_as('carol', format('SELECT workflow.cancel_job(%s)', :aj4)), 'ok: true',
          'carol: cancel_job of alice''s running job');
SELECT is(pg_temp.state(:aj4), 'canceled', 'carol: the running job is canceled');
SELECT is((SELECT string_agg(DISTINCT created_by::text, ',') FROM workflow.jobs WHERE id IN (:aj1, :aj2, :aj3, :aj4)),
          'alice', 'carol''s actions left alice the creator of her jobs');

-------------------------------------------------------------------------------
-- (2) workflows belong to their owner
-------------------------------------------------------------------------------

SELECT is(pg_temp.sqlstate_as('bob', $$SELECT workflow.create_workflow(
              '{"name": "sec_ext", "chain": [{"name": "evil", "sql": "select 1"}]}')$$), '42501',
          'bob: a new version of alice''s workflow: 42501');
SELECT is(pg_temp.sqlstate_as('bob', $$SELECT workflow.drop_workflow('sec_drop1')$$), '42501',
          'bob: drop_workflow of alice''s workflow: 42501');
SELECT is(pg_temp.sqlstate_as('bob', $$SELECT workflow.drop_workflow('sec_ext', force => true)$$), '42501',
          'bob: drop_workflow of alice''s workflow with force: 42501');
SELECT is(ARRAY(SELECT format('%s v%s %s', name, version, owner) FROM workflow.workflows
                 WHERE name IN ('sec_ext', 'sec_drop1') ORDER BY name, version),
          '{"sec_drop1 v1 alice","sec_ext v1 alice"}', 'bob: alice''s workflows are unchanged');
SELECT is(pg_temp.sqlstate_as('wally', $$SELECT workflow.create_workflow(
              '{"name": "sec_ext", "chain": [{"name": "evil", "sql": "select 1"}]}')$$), '42501',
          'wally (worker only): create_workflow: 42501');

SELECT is(pg_temp.try_as('alice', $$SELECT workflow.create_workflow(
              '{"name": "sec_ext", "chain": [{"name": "ext", "task_type": "sec.ext2"}]}')$$), 'ok: 2',
          'alice: a new version of her workflow');
SELECT is(pg_temp.try_as('carol', $$SELECT workflow.create_workflow(
              '{"name": "sec_ext", "chain": [{"name": "ext", "task_type": "sec.ext3"}]}')$$), 'ok: 3',
          'carol: a new version of alice''s workflow');
SELECT is(pg_temp.try_as('carol', $$SELECT workflow.drop_workflow('sec_drop1')$$), 'ok: ',
          'carol: drop_workflow of alice''s workflow');
SELECT is(pg_temp.try_as('alice', $$SELECT workflow.drop_workflow('sec_drop2')$$), 'ok: ',
          'alice: drop_workflow of her workflow');
SELECT is((SELECT count(*)::int FROM workflow.workflows WHERE name IN ('sec_drop1', 'sec_drop2')), 0,
          'drop_workflow: both are gone');
-- definitions are readable by every user
SELECT is(pg_temp.as_role('bob', $$SELECT count(*) FROM workflow.workflows WHERE name = 'sec_ext'$$), '3',
          'bob: may read the definitions of alice''s workflow');

-------------------------------------------------------------------------------
-- (3) the caller is exact
-------------------------------------------------------------------------------

CREATE FUNCTION public.sec_bob_creates(wf text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN workflow.create_job(wf, '{"via": "bob"}');
END
$$;
ALTER FUNCTION public.sec_bob_creates(text) OWNER TO bob;
CREATE FUNCTION public.sec_alice_creates(wf text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN workflow.create_job(wf, '{"via": "alice"}');
ALTER FUNCTION public.sec_alice_creates(text) OWNER TO alice;
-- alice -> carol's definer function -> bob's definer function
CREATE FUNCTION public.sec_carol_calls_bob(wf text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN public.sec_bob_creates(wf);
ALTER FUNCTION public.sec_carol_calls_bob(text) OWNER TO carol;
-- a definer function of a NOLOGIN role
CREATE FUNCTION public.sec_nolog_creates(wf text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN workflow.create_job(wf);
ALTER FUNCTION public.sec_nolog_creates(text) OWNER TO nolog;
-- an invoker function
CREATE FUNCTION public.sec_invoker_creates(wf text) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
RETURN workflow.create_job(wf);

SELECT pg_temp.as_role('alice', $$SELECT public.sec_bob_creates('sec_wait')$$) AS cj1 \gset
SELECT is((SELECT created_by::text FROM workflow.jobs WHERE id = :cj1), 'bob',
          'caller: alice calling bob''s SECURITY DEFINER function creates a job of bob, not of alice');
SELECT is(pg_temp.sqlstate_as('alice', format('SELECT workflow.get_job(%s)', :cj1)), '42704',
          'caller: and alice cannot see that job');
SELECT is(pg_temp.try_as('bob', format($$SELECT workflow.get_job(%s)->>'created_by'$$, :cj1)), 'ok: bob',
          'caller: bob sees it as his');
SELECT pg_temp.as_role('bob', $$SELECT public.sec_alice_creates('sec_wait')$$) AS cj2 \gset
SELECT is((SELECT created_by::text FROM workflow.jobs WHERE id = :cj2), 'alice',
          'caller: bob calling alice''s SECURITY DEFINER function creates a job of alice');
SELECT pg_temp.as_role('alice', $$SELECT public.sec_carol_calls_bob('sec_wait')$$) AS cj3 \gset
SELECT is((SELECT created_by::text FROM workflow.jobs WHERE id = :cj3), 'bob',
          'caller: through two SECURITY DEFINER functions (carol''s, then bob''s) the innermost one counts');
SELECT pg_temp.as_role('alice', $$SELECT public.sec_invoker_creates('sec_wait')$$) AS cj4 \gset
SELECT is((SELECT created_by::text FROM workflow.jobs WHERE id = :cj4), 'alice',
          'caller: a SECURITY INVOKER function credits its caller');
SELECT public.sec_bob_creates('sec_wait') AS cj5 \gset
SELECT is((SELECT created_by::text FROM workflow.jobs WHERE id = :cj5), 'bob',
          'caller: the superuser calling bob''s SECURITY DEFINER function creates a job of bob');
SELECT workflow.create_job('sec_wait') AS cj6 \gset
SELECT is((SELECT created_by FROM workflow.jobs WHERE id = :cj6), current_user::regrole,
          'caller: the superuser''s own job is his');
SELECT is(pg_temp.as_role('carol', $$SELECT workflow.create_workflow(
              '{"name": "sec_carol", "chain": [{"name": "w", "wait": "signal"}]}')$$), '1',
          'caller: carol stores a workflow');
SELECT pg_temp.as_role('alice', $$SELECT public.sec_bob_creates('sec_carol')$$) AS cj7 \gset
SELECT is((SELECT format('%s %s', created_by, (SELECT owner FROM workflow.workflows w WHERE w.id = j.workflow_id))
             FROM workflow.jobs j WHERE id = :cj7),
          'bob carol', 'caller: the job of carol''s workflow created in bob''s function is bob''s');

-- without LOGIN: refused, directly and through a definer function
SELECT is(pg_temp.sqlstate_as('nolog', $$SELECT workflow.create_job('sec_wait')$$), '42501',
          'no LOGIN: create_job: 42501');
SELECT is(pg_temp.try_as('nolog', $$SELECT workflow.create_job('sec_wait')$$),
          '42501: role "nolog" cannot create jobs because it cannot log in',
          'no LOGIN: the message says why');
SELECT is(pg_temp.sqlstate_as('alice', $$SELECT public.sec_nolog_creates('sec_wait')$$), '42501',
          'no LOGIN: alice calling a definer function of a NOLOGIN role: 42501');
SELECT is((SELECT count(*)::int FROM workflow.jobs WHERE created_by = 'nolog'::regrole), 0,
          'no LOGIN: no job of nolog exists');

-- the implementations cannot be called with a forged caller
SELECT is(pg_temp.sqlstate_as('alice', format(
              $$SELECT workflow._create_job('sec_wait', '{}', NULL, now(), 0, NULL, NULL, NULL, NULL, %s)$$,
              'bob'::regrole::oid)), '42501',
          'forged caller: alice calling workflow._create_job(..., bob) directly: 42501');
SELECT is(pg_temp.sqlstate_as('bob', format('SELECT workflow._get_job(%s, %s)', :cj2, 'alice'::regrole::oid)), '42501',
          'forged caller: bob calling workflow._get_job(..., alice) directly: 42501');
SELECT is(pg_temp.sqlstate_as('carol', format('SELECT workflow._cancel_job(%s, NULL, %s)', :cj2, 'alice'::regrole::oid)), '42501',
          'forged caller: even carol may not call workflow._cancel_job directly: 42501');
SELECT is(pg_temp.sqlstate_as('wally', format('SELECT workflow._retry_job(%s, %s)', :cj2, 'alice'::regrole::oid)), '42501',
          'forged caller: nor wally workflow._retry_job: 42501');
SELECT is(pg_temp.sqlstate_as('bob', $$SELECT workflow._create_workflow('{"name": "sec_ext", "chain": [{"name": "x", "sql": "select 1"}]}', 'alice'::regrole::oid)$$),
          '42501', 'forged caller: bob calling workflow._create_workflow(..., alice): 42501');
SELECT is(pg_temp.sqlstate_as('bob', $$SELECT workflow._drop_workflow('sec_ext', true, 'alice'::regrole::oid)$$),
          '42501', 'forged caller: bob calling workflow._drop_workflow(..., alice): 42501');
-- and writing the tables directly is refused
SELECT is(pg_temp.sqlstate_as('bob', format(
              $$INSERT INTO workflow.jobs (workflow_id, workflow, version, created_by)
                SELECT id, name, version, 'alice'::regrole FROM workflow.workflows WHERE name = 'sec_wait'$$)),
          '42501', 'forged caller: bob inserting a job of alice into workflow.jobs: 42501');
SELECT is(pg_temp.sqlstate_as('bob', format($$UPDATE workflow.jobs SET created_by = 'alice' WHERE id = %s$$, :bj1)),
          '42501', 'forged caller: bob updating created_by of his job: 42501');
SELECT is(pg_temp.sqlstate_as('carol', format($$UPDATE workflow.jobs SET created_by = 'carol' WHERE id = %s$$, :bj1)),
          '42501', 'forged caller: carol updating workflow.jobs: 42501');

-------------------------------------------------------------------------------
-- (4) who may call what
-------------------------------------------------------------------------------

-- the worker protocol: not for workflow_user
SELECT is(pg_temp.sqlstate_as('alice', $$SELECT * FROM workflow.poll_tasks('sec.ext', 'alice-w')$$), '42501',
          'user: poll_tasks: 42501');
SELECT is(pg_temp.sqlstate_as('alice', 'SELECT * FROM workflow.next_jobs(0, 10)'), '42501',
          'user: next_jobs: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format($$SELECT * FROM workflow.run_job(%s, 'alice-r')$$, :cj4)), '42501',
          'user: run_job: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format($$SELECT * FROM workflow.finish_job(%s, 'alice-r', 'succeeded')$$, :cj4)), '42501',
          'user: finish_job: 42501');
SELECT is(pg_temp.sqlstate_as('alice', $$SELECT workflow.register_runner('alice-r')$$), '42501',
          'user: register_runner: 42501');
SELECT is(pg_temp.sqlstate_as('alice', $$SELECT workflow.runner_active('w-sec')$$), '42501',
          'user: runner_active: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format('SELECT workflow.complete_task(%s, 1)', :cj4)), '42501',
          'user: complete_task: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format($$SELECT workflow.fail_task(%s, 1, 'x')$$, :cj4)), '42501',
          'user: fail_task: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format('SELECT workflow.extend_task(%s, 1)', :cj4)), '42501',
          'user: extend_task: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format($$SELECT workflow.requeue_task(%s, 1, '1 s')$$, :cj4)), '42501',
          'user: requeue_task: 42501');
-- the admin functions: not for workflow_user
SELECT is(pg_temp.sqlstate_as('alice', $$SELECT workflow.pause_task_type('sec.ext')$$), '42501',
          'user: pause_task_type: 42501');
SELECT is(pg_temp.sqlstate_as('alice', $$SELECT workflow.resume_task_type('sec.ext')$$), '42501',
          'user: resume_task_type: 42501');
SELECT is(pg_temp.sqlstate_as('alice', 'SELECT * FROM workflow.inactive_runners()'), '42501',
          'user: inactive_runners: 42501');
SELECT is(pg_temp.sqlstate_as('alice', 'SELECT * FROM workflow.stale_jobs()'), '42501',
          'user: stale_jobs: 42501');
SELECT is(pg_temp.sqlstate_as('alice', 'SELECT workflow.job_context(j) FROM workflow.jobs j'), '42501',
          'user: job_context: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format('SELECT workflow.delete_job(%s)', :cj4)), '42501',
          'user: delete_job of its own job: 42501');
SELECT is(pg_temp.sqlstate_as('alice', format('SELECT workflow.redact_job(%s)', :cj4)), '42501',
          'user: redact_job of its own job: 42501');
-- ... nor for workflow_worker
SELECT is(pg_temp.sqlstate_as('wally', $$SELECT workflow.pause_task_type('sec.ext')$$), '42501',
          'worker: pause_task_type: 42501');
SELECT is(pg_temp.sqlstate_as('wally', 'SELECT * FROM workflow.inactive_runners()'), '42501',
          'worker: inactive_runners: 42501');
SELECT is(pg_temp.sqlstate_as('wally', 'SELECT * FROM workflow.stale_jobs()'), '42501',
          'worker: stale_jobs: 42501');
SELECT is(pg_temp.sqlstate_as('wally', format('SELECT workflow.delete_job(%s)', :cj4)), '42501',
          'worker: delete_job: 42501');
SELECT is(pg_temp.sqlstate_as('wally', format('SELECT workflow.redact_job(%s)', :cj4)), '42501',
          'worker: redact_job: 42501');
-- a worker has no user functions either
SELECT is(pg_temp.sqlstate_as('wally', $$SELECT workflow.create_job('sec_wait')$$), '42501',
          'worker: create_job: 42501');
SELECT is(pg_temp.sqlstate_as('wally', format('SELECT workflow.get_job(%s)', :cj4)), '42501',
          'worker: get_job: 42501');

-- the worker protocol works for workflow_worker
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_ext', '{"n": 6}')$$) AS wj1 \gset
SELECT is(pg_temp.try_as('wally', $$SELECT workflow.register_runner('w-sec2')$$), 'ok: ',
          'worker: register_runner');
SELECT is(pg_temp.try_as('wally', $$SELECT workflow.runner_active('w-sec2')$$), 'ok: ',
          'worker: runner_active');
SELECT is(pg_temp.try_as('wally', $$SELECT count(*) FROM workflow.next_jobs(0, 1000)$$) ~ '^ok: \d+$', true,
          'worker: next_jobs');
SELECT is(pg_temp.try_as('wally', format($$SELECT t.task FROM workflow.poll_tasks('sec.ext3', 'w-sec2', 10) t WHERE t.job_id = %s$$, :wj1)),
          'ok: ext', 'worker: poll_tasks hands out the task of alice''s job');
SELECT is(pg_temp.ids_as('wally', 'SELECT id FROM workflow.jobs'), '{}'::bigint[],
          'worker: sees no job row of workflow.jobs (RLS): it works with what poll_tasks hands out');
SELECT (SELECT lease FROM workflow.jobs WHERE id = :wj1) AS wl1 \gset
SELECT is(pg_temp.try_as('wally', format($$SELECT workflow.extend_task(%s, %s, '1 min') > now()$$, :wj1, :wl1)),
          'ok: true', 'worker: extend_task');
SELECT is(pg_temp.try_as('wally', format($$SELECT workflow.complete_task(%s, %s, '{"done": true}')$$, :wj1, :wl1)),
          'ok: true', 'worker: complete_task');
SELECT is(pg_temp.state(:wj1), 'succeeded', 'worker: alice''s job succeeded');
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_carol')$$) AS wj2 \gset
SELECT is(pg_temp.try_as('wally', format($$SELECT (workflow.run_job(%s, 'w-sec2')).execution$$, :wj2)),
          'ok: running', 'worker: run_job');
SELECT is(pg_temp.try_as('wally', format($$SELECT (workflow.finish_job(%s, 'w-sec2', 'succeeded', '{"ok": 1}')).execution$$, :wj2)),
          'ok: succeeded', 'worker: finish_job');
SELECT pg_temp.as_role('alice', $$SELECT workflow.create_job('sec_ext', '{"n": 7}')$$) AS wj3 \gset
SELECT is(pg_temp.try_as('wally', format($$SELECT workflow.requeue_task(t.job_id, t.lease, '0') FROM workflow.poll_tasks('sec.ext3', 'w-sec2') t WHERE t.job_id = %s$$, :wj3)),
          'ok: true', 'worker: requeue_task');
SELECT is(pg_temp.try_as('wally', format($$SELECT workflow.fail_task(t.job_id, t.lease, 'no', false) FROM workflow.poll_tasks('sec.ext3', 'w-sec2') t WHERE t.job_id = %s$$, :wj3)),
          'ok: true', 'worker: fail_task');

-- the admin functions work for workflow_admin
SELECT is(pg_temp.try_as('carol', $$SELECT workflow.pause_task_type('sec.ext3')$$), 'ok: true',
          'admin: pause_task_type');
SELECT is((SELECT paused_by::text FROM workflow.task_types WHERE task_type = 'sec.ext3'), 'carol',
          'admin: paused by carol');
SELECT is(pg_temp.try_as('carol', $$SELECT workflow.resume_task_type('sec.ext3')$$), 'ok: true',
          'admin: resume_task_type');
SELECT is(pg_temp.try_as('carol', 'SELECT count(*) >= 0 FROM workflow.inactive_runners()'), 'ok: true',
          'admin: inactive_runners');
SELECT is(pg_temp.try_as('carol', 'SELECT count(*) >= 0 FROM workflow.stale_jobs()'), 'ok: true',
          'admin: stale_jobs');
SELECT is(pg_temp.try_as('carol', format($$SELECT workflow.job_context(j)->'job'->>'id' FROM workflow.jobs j WHERE id = %s$$, :wj1)),
          format('ok: %s', :wj1), 'admin: job_context');
-- an admin is also a worker
SELECT is(pg_temp.try_as('carol', $$SELECT count(*) FROM workflow.poll_tasks('sec.none', 'carol-w')$$), 'ok: 0',
          'admin: poll_tasks');

-- implementation functions: none is executable but the deliberately
-- granted helpers, for any of the roles
-- (granted to workflow_user for workflow.schedule and the schedules view,
-- which run with the caller's rights; harmless helpers without a caller;
-- _in_server_workers, read by the runner_status view, also to
-- workflow_worker)
SELECT is(ARRAY(SELECT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'workflow'::regnamespace AND p.proname LIKE '\_%'
                   AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')
                 ORDER BY 1),
          CASE WHEN r.helpers
               THEN '{_check_name,_check_payload,_cron_field,_cron_next,_in_server_workers,_jsonb_or_null,_name_pattern,_require_pg_cron,_schedules}'::text[]
               ELSE '{_in_server_workers}'::text[] END,
          format('"_" functions: %s may execute %s', r.rolname,
                 CASE WHEN r.helpers THEN 'exactly the helpers granted to workflow_user' ELSE 'only _in_server_workers' END))
  FROM (VALUES ('alice', true), ('bob', true), ('carol', true), ('nolog', true), ('wally', false),
               ('workflow_user', true), ('workflow_worker', false), ('workflow_admin', true))
       AS r(rolname, helpers);
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'workflow'::regnamespace AND p.proname LIKE '\_%'
                   AND p.prosecdef AND has_function_privilege('carol', p.oid, 'EXECUTE')
                 ORDER BY 1),
          '{}'::text[], '"_" functions: no SECURITY DEFINER one is executable, not even by an administrator');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'workflow'::regnamespace AND p.proname LIKE '\_%'
                   AND p.proowner <> (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'workflow')
                 ORDER BY 1),
          '{}'::text[], '"_" functions: all are owned by the extension owner');
-- a real call of each SECURITY DEFINER implementation by alice: 42501
SELECT is(pg_temp.sqlstate_as('alice',
              'SELECT workflow.' || quote_ident(p.proname) || '('
              || (SELECT coalesce(string_agg('(SELECT NULL::' || format_type(t, NULL) || ')', ', ' ORDER BY o), '')
                    FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)) || ')'),
          '42501', format('"_" functions: alice calling %s: 42501', p.oid::regprocedure))
  FROM pg_proc p
 WHERE p.pronamespace = 'workflow'::regnamespace AND p.proname LIKE '\_%' AND p.prosecdef
 ORDER BY p.oid::regprocedure::text;

-------------------------------------------------------------------------------
-- (1) schedules (pg_cron is preloaded in this cluster; the extension is
-- created here and rolled back): a role sees and removes only its own
-------------------------------------------------------------------------------

CREATE EXTENSION pg_cron;
GRANT USAGE ON SCHEMA cron TO alice, bob;
SELECT is(pg_temp.try_as('alice', $$SELECT workflow.schedule('sec-a', '0 3 * * *', 'sec_wait', '{"by": "alice"}') > 0$$),
          'ok: true', 'schedules: alice schedules a workflow');
SELECT is(pg_temp.try_as('bob', $$SELECT workflow.schedule('sec-b', '0 4 * * *', 'sec_wait') > 0$$),
          'ok: true', 'schedules: bob schedules a workflow');
SELECT is(pg_temp.as_role('bob', $$SELECT string_agg(name || ':' || owner, ',' ORDER BY name) FROM workflow.schedules$$),
          'sec-b:bob', 'schedules: bob sees only his schedule');
SELECT is(pg_temp.sqlstate_as('bob', $$SELECT workflow.unschedule('sec-a')$$), '42704',
          'schedules: bob cannot unschedule alice''s schedule: 42704');
SELECT is(pg_temp.as_role('alice', $$SELECT string_agg(name || ':' || owner, ',' ORDER BY name) FROM workflow.schedules$$),
          'sec-a:alice', 'schedules: alice sees only hers');
SELECT is(pg_temp.try_as('alice', $$SELECT workflow.unschedule('sec-a')$$), 'ok: ',
          'schedules: alice unschedules hers');
SELECT is(pg_temp.sqlstate_as('carol', $$SELECT workflow.schedule('sec-c', '0 5 * * *', 'sec_wait')$$), '42501',
          'schedules: carol without USAGE on schema cron: 42501');
SELECT is((SELECT string_agg(jobname || ':' || username, ',' ORDER BY jobname) FROM cron.job),
          'workflow:sec-b:bob', 'schedules: only bob''s schedule is left');

-------------------------------------------------------------------------------
-- (5) nothing writable; nothing for PUBLIC
-------------------------------------------------------------------------------

SELECT is(ARRAY(SELECT format('%s %s %s', r.rolname, c.oid::regclass, pr.priv)
                  FROM pg_class c
                 CROSS JOIN (VALUES ('workflow_user'), ('workflow_worker'), ('workflow_admin'),
                                    ('alice'), ('carol'), ('wally')) AS r(rolname)
                 CROSS JOIN (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'),
                                    ('REFERENCES'), ('TRIGGER')) AS pr(priv)
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                   AND has_table_privilege(r.rolname, c.oid, pr.priv)
                 ORDER BY 1),
          '{}'::text[], 'tables: no table or view is writable by the roles');
SELECT is(ARRAY(SELECT format('%s %s', r.rolname, c.oid::regclass)
                  FROM pg_class c
                 CROSS JOIN (VALUES ('workflow_user'), ('workflow_worker'), ('workflow_admin')) AS r(rolname)
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                   AND has_any_column_privilege(r.rolname, c.oid, 'INSERT, UPDATE, REFERENCES')
                 ORDER BY 1),
          '{}'::text[], 'tables: no column is writable by the roles');
SELECT is(ARRAY(SELECT format('%s %s', r.rolname, c.oid::regclass)
                  FROM pg_class c
                 CROSS JOIN (VALUES ('workflow_user'), ('workflow_worker'), ('workflow_admin')) AS r(rolname)
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind = 'S'
                   AND has_sequence_privilege(r.rolname, c.oid, 'USAGE, UPDATE')
                 ORDER BY 1),
          '{}'::text[], 'sequences: no role may advance a sequence');
SELECT is(ARRAY(SELECT format('%s %s', r.rolname, pr.priv)
                  FROM (VALUES ('workflow_user'), ('workflow_worker'), ('workflow_admin')) AS r(rolname)
                 CROSS JOIN (VALUES ('CREATE')) AS pr(priv)
                 WHERE has_schema_privilege(r.rolname, 'workflow', pr.priv)),
          '{}'::text[], 'schema: no role may create objects in schema workflow');

SELECT is(ARRAY(SELECT a.privilege_type FROM pg_namespace n,
                       aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                 WHERE n.nspname = 'workflow' AND a.grantee = 0),
          '{}'::text[], 'PUBLIC: no privilege on schema workflow');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p,
                       aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                 WHERE p.pronamespace = 'workflow'::regnamespace AND a.grantee = 0 ORDER BY 1),
          '{}'::text[], 'PUBLIC: no privilege on any function');
SELECT is(ARRAY(SELECT c.oid::regclass::text || ' ' || a.privilege_type FROM pg_class c,
                       aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                   AND a.grantee = 0 ORDER BY 1),
          '{}'::text[], 'PUBLIC: no privilege on any table or view');
SELECT is(ARRAY(SELECT c.oid::regclass::text || ' ' || a.privilege_type FROM pg_class c,
                       aclexplode(coalesce(c.relacl, acldefault('s', c.relowner))) a
                 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind = 'S'
                   AND a.grantee = 0 ORDER BY 1),
          '{}'::text[], 'PUBLIC: no privilege on any sequence');
-- array types have no privileges of their own (they follow their element)
SELECT is(ARRAY(SELECT t.oid::regtype::text FROM pg_type t,
                       aclexplode(coalesce(t.typacl, acldefault('T', t.typowner))) a
                 WHERE t.typnamespace = 'workflow'::regnamespace AND a.grantee = 0
                   AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
                   AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
                 ORDER BY 1),
          '{}'::text[], 'PUBLIC: no privilege on any type (enums, composite types)');
SELECT is(ARRAY(SELECT t.oid::regtype::text FROM pg_type t,
                       aclexplode(coalesce(t.typacl, acldefault('T', t.typowner))) a
                 WHERE t.typnamespace = 'workflow'::regnamespace AND a.grantee = 0
                   AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
                   AND t.typrelid <> 0 AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) <> 'c'
                 ORDER BY 1),
          '{}'::text[], 'PUBLIC: no privilege on the row type of any table or view');

SELECT * FROM finish();
ROLLBACK;
