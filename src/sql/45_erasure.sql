-------------------------------------------------------------------------------
-- Erasure: an administrator deletes or redacts a finished job
-------------------------------------------------------------------------------
--
-- Dead letters (failed and canceled jobs) are kept for
-- workflow.failed_retention so that someone can look at them; the data they
-- hold (params, outputs, errors, info) may have to go sooner, on request.
-- Both functions act on a whole tree: a root job with its children.  Only
-- a finished tree may be erased (nothing of it still runs, so no runner,
-- worker or join needs the rows), and only by a member of workflow_admin
-- (EXECUTE is granted to workflow_admin only; the implementation checks the
-- caller again).  Every erasure is written to the server log (LOG): the
-- job, its workflow and the role that erased it.

-- The ids of the tree of root job `id' (the root first), locked, after
-- the checks common to delete_job and redact_job (`action' names the call
-- in the messages); raises the standard errors.
CREATE OR REPLACE FUNCTION workflow._erasable_tree(id bigint, action text, p_caller oid)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    live    workflow.jobs;
BEGIN
    IF NOT pg_has_role(p_caller, 'workflow_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to % job %', action, _erasable_tree.id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only members of workflow_admin may erase jobs.';
    END IF;
    j := workflow._lock_job(_erasable_tree.id, p_caller);
    IF j.parent_id IS NOT NULL THEN
        RAISE EXCEPTION 'cannot % job % because it is a child of job %', action, j.id, j.parent_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('%s its root job %s, with its whole tree.', initcap(action), j.root_id);
    END IF;
    IF j.execution NOT IN ('succeeded', 'failed', 'canceled') THEN
        RAISE EXCEPTION 'cannot % job % because it is not finished', action, j.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The job is %s.', j.execution),
                  HINT = 'Cancel it first, and wait for it to end.';
    END IF;
    -- a canceled child may still run its oncancel chain
    SELECT * INTO live FROM workflow.jobs c
     WHERE c.root_id = j.id AND c.parent_id IS NOT NULL
       AND c.execution IN ('queued', 'running', 'waiting')
     ORDER BY c.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot % job % because its child job % is not finished', action, j.id, live.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The child job is %s.', live.execution),
                  HINT = 'Wait for it to end.';
    END IF;
    RETURN j.id || ARRAY(SELECT c.id FROM workflow.jobs c
                          WHERE c.root_id = j.id AND c.parent_id IS NOT NULL
                          ORDER BY c.id
                            FOR UPDATE);
END
$$;
COMMENT ON FUNCTION workflow._erasable_tree(bigint, text, oid) IS
    'internal: lock a finished root job and its tree for delete_job or redact_job, or raise why it cannot be erased';

CREATE OR REPLACE FUNCTION workflow._delete_job(id bigint, p_caller oid)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ids     bigint[];
    j       workflow.jobs;
BEGIN
    ids := workflow._erasable_tree(_delete_job.id, 'delete', p_caller);
    SELECT * INTO j FROM workflow.jobs WHERE id = ids[1];
    -- as retention does, with every row that names the jobs
    PERFORM workflow._sweep_prune(ids);
    RAISE LOG 'job % of workflow "%" deleted by role "%"', j.id, j.workflow, p_caller::regrole
        USING DETAIL = format('The job was %s; %s jobs (it and its children) were deleted with their task runs and info.',
                              j.execution, cardinality(ids));
    RETURN cardinality(ids);
END
$$;
COMMENT ON FUNCTION workflow._delete_job(bigint, oid) IS
    'internal: implementation of workflow.delete_job, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._redact_job(id bigint, p_caller oid)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ids     bigint[];
    j       workflow.jobs;
BEGIN
    ids := workflow._erasable_tree(_redact_job.id, 'redact', p_caller);
    SELECT * INTO j FROM workflow.jobs WHERE id = ids[1];
    -- the data, not the states, attempts and timings
    UPDATE workflow.jobs
       SET params = '{}', result = NULL, item = NULL,
           error = CASE WHEN error IS NULL THEN NULL ELSE '{"redacted": true}'::jsonb END
     WHERE id = ANY (ids);
    UPDATE workflow.task_runs
       SET output = NULL,
           error = CASE WHEN error IS NULL THEN NULL ELSE '{"redacted": true}'::jsonb END
     WHERE job_id = ANY (ids) AND (output IS NOT NULL OR error IS NOT NULL);
    UPDATE workflow.job_info SET info = '{}'
     WHERE job_id = ANY (ids) AND info <> '{}';
    RAISE LOG 'job % of workflow "%" redacted by role "%"', j.id, j.workflow, p_caller::regrole
        USING DETAIL = format('The job was %s; %s jobs (it and its children) had their params, results, outputs, errors and info blanked.',
                              j.execution, cardinality(ids));
    RETURN cardinality(ids);
END
$$;
COMMENT ON FUNCTION workflow._redact_job(bigint, oid) IS
    'internal: implementation of workflow.redact_job, with the calling role (src/api.c)';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c)

CREATE OR REPLACE FUNCTION workflow.delete_job(id bigint)
RETURNS integer
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.delete_job(bigint) IS
    'administrators: erase a finished root job with its child jobs, task runs and info; returns how many jobs were deleted';

CREATE OR REPLACE FUNCTION workflow.redact_job(id bigint)
RETURNS integer
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.redact_job(bigint) IS
    'administrators: blank the params, results, task outputs, errors and info of a finished root job and its child jobs, keeping states and timings; returns how many jobs were redacted';
