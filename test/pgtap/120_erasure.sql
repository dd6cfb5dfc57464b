-- 120_erasure.sql: delete_job and redact_job (README "Erasure and dead
-- letters"):
--
--   er_alice  LOGIN role, member of workflow_user (creates the jobs)
--   er_wally  LOGIN role, member of workflow_worker
--   er_carol  LOGIN role, member of workflow_admin, no superuser
--
-- (1) Refusals: a role that is not an administrator (42501, for its own
--     job too; the implementation checks the caller again), a NULL id
--     (22004), a job that does not exist (42704), a job that is not
--     finished (55000), a child job (55000), a finished root whose child
--     has not ended (55000).  Nothing changes.
-- (2) redact_job of a finished tree (a parallel job, its two children):
--     no params, result, item, output, error text or info is left in any
--     of its jobs, task runs and info; the states, attempts and timings
--     are those of before; another job is untouched.
-- (3) delete_job of the tree: no row of any table that names a job (the
--     tables with a job column, listed from the catalog: a new one fails
--     this test until delete_job erases it) names any job of the tree;
--     another job keeps its rows.
--
-- The audit LOG line is checked by test/t/240_erasure.pl (the server log).
-- One transaction, rolled back; no runner executes jobs in this cluster
-- (test/conf/pgtap.conf): this file plays the runner (run_job and
-- _runner_record, as 100_control_flow.sql does).

BEGIN;

SET LOCAL search_path = public, pg_catalog;
SET CONSTRAINTS ALL IMMEDIATE;

SELECT plan(44);

CREATE ROLE er_alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE er_wally LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE er_carol LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO er_alice;
GRANT workflow_worker TO er_wally;
GRANT workflow_admin TO er_carol;

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------

-- Run p_sql as p_role; 'ok: <first column>' when it worked (effects kept),
-- else its SQLSTATE (effects rolled back).
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
        RETURN SQLSTATE;
    END;
END
$$;

-- claim (run_job) unless running, and report an outcome as a runner
CREATE FUNCTION pg_temp.run(p_id bigint, p_outcome workflow.outcome, p_output jsonb DEFAULT NULL,
                            p_error jsonb DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflow.jobs SET run_at = now() WHERE id = p_id AND execution = 'queued' AND run_at > now();
    IF (SELECT execution FROM workflow.jobs WHERE id = p_id) <> 'running' THEN
        PERFORM workflow.run_job(p_id, 'er-r1');
    END IF;
    PERFORM workflow._runner_record(p_id, (SELECT lease FROM workflow.jobs WHERE id = p_id),
                                    p_outcome, p_output, p_error, now(), NULL, NULL);
    RETURN (SELECT execution::text FROM workflow.jobs WHERE id = p_id);
END
$$;

-- The tables of the extension with a column that names a job, other than
-- workflow.jobs: (table, column).
CREATE FUNCTION pg_temp.job_columns()
RETURNS TABLE (tab regclass, col name) LANGUAGE sql AS $$
    SELECT c.oid::regclass, a.attname
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
     WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'p')
       AND c.oid <> 'workflow.jobs'::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
       AND (a.attname ~ '^job(_id)?$' OR a.attname ~ '_job(_id)?$')
     ORDER BY c.relname, a.attname
$$;

-- How many rows of every table name one of p_ids: "table.column n", and
-- the jobs by id, parent or root.
CREATE FUNCTION pg_temp.rows_naming(p_ids bigint[])
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    t       record;
    n       bigint;
    out     text[] := '{}';
BEGIN
    FOR t IN SELECT * FROM pg_temp.job_columns() LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE %I = ANY ($1)', t.tab, t.col) INTO n USING p_ids;
        out := out || format('%s.%s %s', t.tab, t.col, n);
    END LOOP;
    SELECT count(*) INTO n FROM workflow.jobs j
     WHERE j.id = ANY (p_ids) OR j.parent_id = ANY (p_ids) OR j.root_id = ANY (p_ids);
    RETURN out || format('workflow.jobs %s', n);
END
$$;

-- Everything of a tree (jobs, task runs, info), to compare before and after.
CREATE FUNCTION pg_temp.snapshot(p_root bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat(
        (SELECT jsonb_agg(to_jsonb(j) ORDER BY j.id)::text FROM workflow.jobs j WHERE j.root_id = p_root),
        (SELECT jsonb_agg(to_jsonb(r) ORDER BY r.id)::text FROM workflow.task_runs r
          WHERE r.job_id IN (SELECT j.id FROM workflow.jobs j WHERE j.root_id = p_root)),
        (SELECT jsonb_agg(to_jsonb(i) ORDER BY i.id)::text FROM workflow.job_info i
          WHERE i.job_id IN (SELECT j.id FROM workflow.jobs j WHERE j.root_id = p_root))))
$$;

-- What redaction keeps of a tree: states, attempts and timings.
CREATE FUNCTION pg_temp.kept(p_root bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat(
        (SELECT string_agg(concat_ws(' ', j.id, j.execution, j.phase, j.step, j.attempt, j.task_attempt,
                                     j.created_at, j.started_at, j.finished_at, j.run_at, j.parent_id,
                                     j.branch, j.child_index, j.workflow, j.version), ';' ORDER BY j.id)
           FROM workflow.jobs j WHERE j.root_id = p_root),
        (SELECT string_agg(concat_ws(' ', r.id, r.job_id, r.task, r.status, r.attempt, r.started_at,
                                     r.finished_at, r.error IS NULL), ';' ORDER BY r.id)
           FROM workflow.task_runs r WHERE r.job_id IN (SELECT j.id FROM workflow.jobs j WHERE j.root_id = p_root)),
        (SELECT string_agg(concat_ws(' ', i.id, i.job_id, i.created_at), ';' ORDER BY i.id)
           FROM workflow.job_info i WHERE i.job_id IN (SELECT j.id FROM workflow.jobs j WHERE j.root_id = p_root))))
$$;

-------------------------------------------------------------------------------
-- Setup: alice's jobs
-------------------------------------------------------------------------------

\o /dev/null
SET LOCAL ROLE er_alice;
SELECT workflow.create_workflow('{"name": "er_one", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "er_par", "chain": [
    {"name": "first", "sql": "select 1"},
    {"name": "checks", "parallel": {"x": [{"name": "x1", "sql": "select 1"}],
                                    "y": [{"name": "y1", "sql": "select 2", "attempts": 2, "delay": 0}]}},
    {"name": "after", "sql": "select 3"}]}');
RESET ROLE;
\o

-- a tree: the parent and both children succeed, with outputs and info
SELECT pg_temp.try_as('er_alice', $$SELECT workflow.create_job('er_par', '{"email": "ann@example.com"}')$$) AS r \gset
SELECT substr(:'r', 5)::bigint AS par \gset
SELECT pg_temp.run(:par, 'succeeded', '{"step": "ann"}') AS ignore \gset
SELECT pg_temp.run(:par, 'wait_step') AS ignore \gset
SELECT id AS kid0 FROM workflow.jobs WHERE parent_id = :par AND branch = 'x' \gset
SELECT id AS kid1 FROM workflow.jobs WHERE parent_id = :par AND branch = 'y' \gset
SELECT pg_temp.run(:kid0, 'succeeded', '{"x": "ann"}') AS ignore \gset
-- the first attempt of y fails, then it succeeds (a task run with an error)
SELECT pg_temp.run(:kid1, 'failed', NULL, '{"message": "y failed for ann@example.com"}') AS ignore \gset
SELECT pg_temp.run(:kid1, 'succeeded', '{"y": "ann"}') AS ignore \gset
SELECT pg_temp.run(:par, 'succeeded', '{"done": "ann"}') AS ignore \gset
SELECT string_agg(pg_temp.try_as('er_alice', format($$SELECT workflow.add_info(%s, '{"card": "4111"}')$$, id)), ',') AS ignore
  FROM unnest(ARRAY[:par, :kid0, :kid1]) id \gset
-- a foreach child carries its item
UPDATE workflow.jobs SET item = '{"email": "ann@example.com"}' WHERE id = :kid0;
SELECT is(format('%s %s %s', (SELECT execution FROM workflow.jobs WHERE id = :par),
                 (SELECT execution FROM workflow.jobs WHERE id = :kid0),
                 (SELECT execution FROM workflow.jobs WHERE id = :kid1)),
          'succeeded succeeded succeeded', 'setup: a finished tree of three jobs');
SELECT is((SELECT count(*)::integer FROM workflow.task_runs WHERE job_id IN (:par, :kid0, :kid1) AND error IS NOT NULL),
          1, 'setup: one task run with an error');

-- another finished job, failed, and a live one
SELECT substr(pg_temp.try_as('er_alice', $$SELECT workflow.create_job('er_one', '{"email": "bob@example.com"}')$$), 5)::bigint AS other \gset
SELECT pg_temp.run(:other, 'failed', NULL, '{"message": "no account for bob@example.com"}') AS ignore \gset
SELECT pg_temp.try_as('er_alice', format($$SELECT workflow.add_info(%s, '{"bob": 1}')$$, :other)) AS ignore \gset
SELECT substr(pg_temp.try_as('er_alice', $$SELECT workflow.create_job('er_one', '{"email": "cy@example.com"}')$$), 5)::bigint AS live \gset

SELECT pg_temp.snapshot(:par) AS snap_par, pg_temp.snapshot(:other) AS snap_other,
       pg_temp.snapshot(:live) AS snap_live \gset

-------------------------------------------------------------------------------
-- (1) Refusals
-------------------------------------------------------------------------------

SELECT is(pg_temp.try_as('er_alice', format('SELECT workflow.delete_job(%s)', :par)), '42501',
          'user: delete_job of its own job: 42501');
SELECT is(pg_temp.try_as('er_alice', format('SELECT workflow.redact_job(%s)', :par)), '42501',
          'user: redact_job of its own job: 42501');
SELECT is(pg_temp.try_as('er_wally', format('SELECT workflow.delete_job(%s)', :par)), '42501',
          'worker: delete_job: 42501');
SELECT is(pg_temp.try_as('er_wally', format('SELECT workflow.redact_job(%s)', :par)), '42501',
          'worker: redact_job: 42501');
SELECT throws_ok(format($$SELECT workflow._erasable_tree(%s, 'delete', 'er_alice'::regrole)$$, :par), '42501',
                 format('permission denied to delete job %s', :par),
                 'the implementation checks the caller again: 42501 for a role that is not an administrator');
SELECT is(pg_temp.try_as('er_carol', 'SELECT workflow.delete_job(NULL)'), '22004', 'delete_job(NULL): 22004');
SELECT is(pg_temp.try_as('er_carol', 'SELECT workflow.redact_job(NULL)'), '22004', 'redact_job(NULL): 22004');
SELECT is(pg_temp.try_as('er_carol', 'SELECT workflow.delete_job(-1)'), '42704', 'delete_job of no job: 42704');
SELECT is(pg_temp.try_as('er_carol', 'SELECT workflow.redact_job(-1)'), '42704', 'redact_job of no job: 42704');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :live)), '55000',
          'delete_job of a queued job: 55000');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.redact_job(%s)', :live)), '55000',
          'redact_job of a queued job: 55000');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :kid0)), '55000',
          'delete_job of a child job: 55000');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.redact_job(%s)', :kid1)), '55000',
          'redact_job of a child job: 55000');
UPDATE workflow.jobs SET execution = 'running' WHERE id = :kid1;
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :par)), '55000',
          'delete_job of a finished root whose child still runs: 55000');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.redact_job(%s)', :par)), '55000',
          'redact_job of a finished root whose child still runs: 55000');
UPDATE workflow.jobs SET execution = 'succeeded' WHERE id = :kid1;
SELECT is(pg_temp.snapshot(:par), :'snap_par', 'refusals: the tree is unchanged');
SELECT is(pg_temp.snapshot(:live), :'snap_live', 'refusals: the live job is unchanged');

-------------------------------------------------------------------------------
-- (2) redact_job
-------------------------------------------------------------------------------

SELECT pg_temp.kept(:par) AS kept_par \gset
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.redact_job(%s)', :par)), 'ok: 3',
          'redact_job: the three jobs of the tree');
SELECT is(ARRAY(SELECT DISTINCT params::text FROM workflow.jobs WHERE root_id = :par), ARRAY['{}'],
          'redact_job: no params left');
SELECT is((SELECT count(*)::integer FROM workflow.jobs WHERE root_id = :par
            AND (result IS NOT NULL OR item IS NOT NULL OR (error IS NOT NULL AND error <> '{"redacted": true}'))),
          0, 'redact_job: no result, item or error text left in the jobs');
SELECT is((SELECT count(*)::integer FROM workflow.task_runs
            WHERE job_id IN (:par, :kid0, :kid1)
              AND (output IS NOT NULL OR (error IS NOT NULL AND error <> '{"redacted": true}'))),
          0, 'redact_job: no output or error text left in the task runs');
SELECT is(ARRAY(SELECT DISTINCT info::text FROM workflow.job_info WHERE job_id IN (:par, :kid0, :kid1)),
          ARRAY['{}'], 'redact_job: no info left (the entries stay, empty)');
SELECT is((SELECT count(*)::integer FROM workflow.job_info WHERE job_id IN (:par, :kid0, :kid1)), 3,
          'redact_job: the info entries keep their times');
SELECT ok(position('ann' IN (SELECT concat((SELECT jsonb_agg(to_jsonb(j))::text FROM workflow.jobs j WHERE j.root_id = :par),
                                           (SELECT jsonb_agg(to_jsonb(r))::text FROM workflow.task_runs r WHERE r.job_id IN (:par, :kid0, :kid1)),
                                           (SELECT jsonb_agg(to_jsonb(i))::text FROM workflow.job_info i WHERE i.job_id IN (:par, :kid0, :kid1))))) = 0,
          'redact_job: nothing of the personal data is left anywhere in the tree''s rows');
SELECT is(pg_temp.kept(:par), :'kept_par', 'redact_job: states, attempts and timings are kept');
SELECT is((workflow.get_job(:par) -> 'execution') #>> '{}', 'succeeded', 'redact_job: get_job still shows the job');
SELECT is(pg_temp.snapshot(:other), :'snap_other', 'redact_job: another job is untouched');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.redact_job(%s)', :par)), 'ok: 3',
          'redact_job again: the same count');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.redact_job(%s)', :other)), 'ok: 1',
          'redact_job of a failed job');
SELECT is((SELECT error FROM workflow.jobs WHERE id = :other), '{"redacted": true}'::jsonb,
          'redact_job: a failed job keeps that it failed with an error, not the error');

-------------------------------------------------------------------------------
-- (3) delete_job
-------------------------------------------------------------------------------

-- the tables that name a job: delete_job erases each of them
SELECT is(ARRAY(SELECT format('%s.%s', tab, col) FROM pg_temp.job_columns()),
          '{workflow.job_info.job_id,workflow.joins.job_id,workflow.target_locks.job_id,workflow.task_runs.job_id}'::text[],
          'the tables with a job column (besides workflow.jobs) are the ones delete_job erases');
-- rows a finished tree does not normally hold, there to be erased too
INSERT INTO workflow.joins (job_id, lease, task, total, pending, next_child, fail_fast)
VALUES (:par, 1, 'checks', 2, 0, 2, true);
INSERT INTO workflow.target_locks (owner, target, job_id) VALUES ('er_alice', 'er-target', :kid0);
SELECT is(ARRAY(SELECT x FROM unnest(pg_temp.rows_naming(ARRAY[:par, :kid0, :kid1]::bigint[])) x WHERE x ~ ' 0$'),
          '{}'::text[], 'before delete_job: the tree is named in every table');
SELECT pg_temp.rows_naming(ARRAY[:other]::bigint[]) AS rows_other \gset
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :par)), 'ok: 3',
          'delete_job: the three jobs of the tree');
SELECT is(pg_temp.rows_naming(ARRAY[:par, :kid0, :kid1]::bigint[]),
          '{"workflow.job_info.job_id 0","workflow.joins.job_id 0","workflow.target_locks.job_id 0","workflow.task_runs.job_id 0","workflow.jobs 0"}'::text[],
          'delete_job: no row of any table names a job of the tree');
SELECT is(pg_temp.rows_naming(ARRAY[:other]::bigint[]), :'rows_other'::text[],
          'delete_job: another job keeps its rows');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :par)), '42704',
          'delete_job again: the job does not exist (42704)');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.get_job(%s)', :kid1)), '42704',
          'delete_job: its children do not exist either');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :other)), 'ok: 1',
          'delete_job of a failed job');
SELECT is(pg_temp.rows_naming(ARRAY[:other]::bigint[]),
          '{"workflow.job_info.job_id 0","workflow.joins.job_id 0","workflow.target_locks.job_id 0","workflow.task_runs.job_id 0","workflow.jobs 0"}'::text[],
          'delete_job of a failed job: nothing left');
SELECT is(pg_temp.snapshot(:live), :'snap_live', 'the live job is still there, unchanged');
-- a canceled job
SELECT is(pg_temp.try_as('er_alice', format('SELECT workflow.cancel_job(%s)', :live)), 'ok: true', 'a job canceled');
SELECT is(pg_temp.try_as('er_carol', format('SELECT workflow.delete_job(%s)', :live)), 'ok: 1',
          'delete_job of a canceled job');

SELECT * FROM finish();
ROLLBACK;
