--
-- Erasure: delete_job and redact_job (administrators only), with every
-- refusal and its SQLSTATE, and what each leaves of a job and its tree.
--
-- No runner executes jobs in this instance: jobs are claimed with run_job
-- and their tasks reported with _runner_record, as an in-server runner
-- does; a parallel entry reports wait_step with the value of its SQL.
-- Workflows are named er_*; the file drops them at the end.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 3001 whatever ran before, so that the error
-- messages that name a job are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 3001, false) AS first_job_id;

SELECT workflow.create_workflow('{"name": "er_one", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "er_par", "chain": [
    {"name": "checks", "parallel": {"x": [{"name": "x1", "sql": "select 1"}],
                                    "y": [{"name": "y1", "sql": "select 2"}]}}]}');

CREATE ROLE er_alice LOGIN IN ROLE workflow_user;
CREATE ROLE er_carol LOGIN IN ROLE workflow_admin;

-- claim (run_job) unless running, and report an outcome as a runner
CREATE FUNCTION pg_temp.run(p_id bigint, p_outcome workflow.outcome, p_output jsonb DEFAULT NULL,
                            p_error jsonb DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT execution FROM workflow.jobs WHERE id = p_id) <> 'running' THEN
        PERFORM workflow.run_job(p_id, 'er-runner');
    END IF;
    PERFORM workflow._runner_record(p_id, (SELECT lease FROM workflow.jobs WHERE id = p_id),
                                    p_outcome, p_output, p_error, now(), NULL, NULL);
    RETURN (SELECT execution::text FROM workflow.jobs WHERE id = p_id);
END
$$;

-- what is left of a tree: one line per job, its task runs and its info
CREATE FUNCTION pg_temp.left_of(p_root bigint)
RETURNS TABLE (job text, params jsonb, result jsonb, error jsonb, item jsonb, runs text, info text)
LANGUAGE sql AS $$
    SELECT CASE WHEN j.parent_id IS NULL THEN 'root' ELSE 'child ' || j.branch END || ' ' || j.execution,
           j.params, j.result, j.error, j.item,
           (SELECT string_agg(format('%s:%s out=%s err=%s timed=%s', r.task, r.status, r.output, r.error,
                                     r.finished_at >= r.started_at), '; ' ORDER BY r.id)
              FROM workflow.task_runs r WHERE r.job_id = j.id),
           (SELECT string_agg(i.info::text, '; ' ORDER BY i.id) FROM workflow.job_info i WHERE i.job_id = j.id)
      FROM workflow.jobs j
     WHERE j.root_id = p_root
     ORDER BY j.id
$$;

-- a job that succeeded, with info (3001)
SELECT workflow.create_job('er_one', '{"email": "ann@example.com"}') AS ok1 \gset
SELECT workflow.add_info(:ok1, '{"card": "4111"}');
SELECT pg_temp.run(:ok1, 'succeeded', '{"token": "secret"}');
-- a job that failed (3002)
SELECT workflow.create_job('er_one', '{"email": "bob@example.com"}') AS bad1 \gset
SELECT pg_temp.run(:bad1, 'failed', NULL, '{"message": "no account for bob@example.com"}');
-- a live job (3003)
SELECT workflow.create_job('er_one', '{"email": "cy@example.com"}') AS live1 \gset
-- a parallel job (3004) whose child y (3006) failed, child x (3005)
-- succeeded: the tree failed
SELECT workflow.create_job('er_par', '{"email": "di@example.com"}') AS par \gset
SELECT pg_temp.run(:par, 'wait_step');
SELECT id AS kid0 FROM workflow.jobs WHERE parent_id = :par AND branch = 'x' \gset
SELECT id AS kid1 FROM workflow.jobs WHERE parent_id = :par AND branch = 'y' \gset
SELECT pg_temp.run(:kid0, 'succeeded', '{"x": "di"}');
SELECT pg_temp.run(:kid1, 'failed', NULL, '{"message": "y failed for di"}');
SELECT execution FROM workflow.jobs WHERE id = :par;

-- everything of these jobs, to compare with after the refusals
CREATE FUNCTION pg_temp.snapshot()
RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat(
        (SELECT jsonb_agg(to_jsonb(j) ORDER BY j.id)::text FROM workflow.jobs j WHERE j.workflow LIKE 'er\_%'),
        (SELECT jsonb_agg(to_jsonb(r) ORDER BY r.id)::text FROM workflow.task_runs r
          WHERE r.job_id IN (SELECT j.id FROM workflow.jobs j WHERE j.workflow LIKE 'er\_%')),
        (SELECT jsonb_agg(to_jsonb(i) ORDER BY i.id)::text FROM workflow.job_info i
          WHERE i.job_id IN (SELECT j.id FROM workflow.jobs j WHERE j.workflow LIKE 'er\_%'))))
$$;
SELECT pg_temp.snapshot() AS before \gset

-------------------------------------------------------------------------------
-- Refusals: nothing changes
-------------------------------------------------------------------------------

-- a NULL id
SELECT workflow.delete_job(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.redact_job(NULL);
\echo :LAST_ERROR_SQLSTATE
-- a job that does not exist
SELECT workflow.delete_job(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.redact_job(999999999);
\echo :LAST_ERROR_SQLSTATE
-- a job that is not finished
SELECT workflow.delete_job(:live1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.redact_job(:live1);
\echo :LAST_ERROR_SQLSTATE
-- a child job
SELECT workflow.delete_job(:kid0);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.redact_job(:kid1);
\echo :LAST_ERROR_SQLSTATE
-- a finished root whose child has not ended (its oncancel chain runs)
UPDATE workflow.jobs SET execution = 'running' WHERE id = :kid1;
SELECT workflow.delete_job(:par);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.redact_job(:par);
\echo :LAST_ERROR_SQLSTATE
UPDATE workflow.jobs SET execution = 'failed' WHERE id = :kid1;
-- a role that is not an administrator, even for its own job
SET ROLE er_alice;
SELECT workflow.create_job('er_one') AS own \gset
SELECT workflow.delete_job(:ok1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.redact_job(:own);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM workflow.jobs WHERE id = :own;
-- the jobs are as they were
SELECT pg_temp.snapshot() = :'before' AS unchanged;
SELECT * FROM pg_temp.left_of(:ok1);

-------------------------------------------------------------------------------
-- redact_job: params, results, outputs, errors and info blanked; states,
-- attempts and timings kept
-------------------------------------------------------------------------------

SET ROLE er_carol;
SELECT workflow.redact_job(:bad1);
SELECT workflow.redact_job(:ok1);
SELECT workflow.redact_job(:par);
-- again: nothing more to blank, the same count
SELECT workflow.redact_job(:par);
RESET ROLE;
SELECT * FROM pg_temp.left_of(:bad1);
SELECT * FROM pg_temp.left_of(:ok1);
SELECT * FROM pg_temp.left_of(:par);
-- as get_job shows it
SELECT d -> 'params' AS params, d -> 'result' AS result, d -> 'error' AS error,
       jsonb_path_query_array(d, '$.tasks[*].output') AS outputs,
       jsonb_path_query_array(d, '$.children[*].error') AS children_errors
  FROM workflow.get_job(:par) d;
-- the live job and the other jobs are untouched
SELECT params FROM workflow.jobs WHERE id = :live1;

-------------------------------------------------------------------------------
-- delete_job: the job and its tree, with their task runs and info
-------------------------------------------------------------------------------

SET ROLE er_carol;
SELECT workflow.delete_job(:ok1);
SELECT workflow.delete_job(:par);
RESET ROLE;
SELECT (SELECT count(*) FROM workflow.jobs WHERE id IN (:ok1, :par, :kid0, :kid1)) AS jobs,
       (SELECT count(*) FROM workflow.task_runs WHERE job_id IN (:ok1, :par, :kid0, :kid1)) AS task_runs,
       (SELECT count(*) FROM workflow.job_info WHERE job_id IN (:ok1, :par, :kid0, :kid1)) AS info,
       (SELECT count(*) FROM workflow.joins WHERE job_id IN (:ok1, :par, :kid0, :kid1)) AS joins,
       (SELECT count(*) FROM workflow.target_locks WHERE job_id IN (:ok1, :par, :kid0, :kid1)) AS target_locks;
-- gone: it does not exist any more
SELECT workflow.delete_job(:ok1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.get_job(:par);
\echo :LAST_ERROR_SQLSTATE
-- a failed job, by the superuser
SELECT workflow.delete_job(:bad1);
-- the others are still there
SELECT count(*) AS others FROM workflow.jobs WHERE id = :live1;

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true) FROM unnest(ARRAY['er_one', 'er_par']) name;
DROP ROLE er_alice;
DROP ROLE er_carol;
