-- Jobs API
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION workflow._create_job(workflow text, params jsonb, target text, run_at timestamptz, priority integer, idempotency_key text, version integer, domain text, queue text, p_caller oid)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    w       workflow.workflows;
    first   workflow.tasks;
    new_id  bigint;
    next_id bigint;
    v_queue text;
    v_key   text;
BEGIN
    IF _create_job.workflow IS NULL THEN
        RAISE EXCEPTION 'workflow name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _create_job.params IS NULL OR _create_job.run_at IS NULL OR _create_job.priority IS NULL THEN
        RAISE EXCEPTION 'params, run_at and priority must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(_create_job.params) <> 'object' THEN
        RAISE EXCEPTION 'job params must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is a JSON %s.', jsonb_typeof(_create_job.params));
    END IF;
    PERFORM workflow._check_payload(_create_job.params, 'job params');
    IF _create_job.domain IS NOT NULL AND _create_job.domain !~ workflow._name_pattern() THEN
        RAISE EXCEPTION 'invalid domain "%"', left(_create_job.domain, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A domain is 1 to 128 letters, digits, "_", "-" or ".".';
    END IF;
    IF _create_job.target = '' OR _create_job.idempotency_key = '' THEN
        RAISE EXCEPTION 'target and idempotency key must not be empty strings'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for a job without a target or idempotency key.';
    END IF;
    IF length(_create_job.target) > 1000 OR length(_create_job.idempotency_key) > 1000 THEN
        RAISE EXCEPTION 'target and idempotency key must not be longer than 1000 characters'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF NOT isfinite(_create_job.run_at) THEN
        RAISE EXCEPTION 'run_at must be a finite time, not %', _create_job.run_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Claim order is priority, then run_at: a role that is not an
    -- administrator cannot put its jobs before other roles' jobs, neither
    -- with a priority above workflow.max_user_priority nor with a run_at in
    -- the past (a time already passed means "now").
    IF NOT pg_has_role(p_caller, 'workflow_admin', 'MEMBER') THEN
        IF _create_job.priority > current_setting('workflow.max_user_priority')::integer THEN
            RAISE EXCEPTION 'priority % is higher than this role may use', _create_job.priority
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Roles that are not members of workflow_admin may use priorities up to workflow.max_user_priority (%s).',
                                      current_setting('workflow.max_user_priority')),
                      HINT = 'An administrator can allow more for one role with ALTER ROLE ... SET workflow.max_user_priority.';
        END IF;
        _create_job.run_at := GREATEST(_create_job.run_at, now());
    END IF;

    IF _create_job.version IS NULL THEN
        SELECT * INTO w FROM workflow.workflows ww
         WHERE ww.name = _create_job.workflow ORDER BY ww.version DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'workflow "%" does not exist', _create_job.workflow
                USING ERRCODE = 'undefined_object',
                      HINT = 'Create it with workflow.create_workflow().';
        END IF;
    ELSE
        SELECT * INTO w FROM workflow.workflows ww
         WHERE ww.name = _create_job.workflow AND ww.version = _create_job.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'version % of workflow "%" does not exist',
                            _create_job.version, _create_job.workflow
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    IF w.part_of IS NOT NULL THEN
        RAISE EXCEPTION 'workflow "%" is a chain of workflow "%"', _create_job.workflow,
                        (SELECT p.name FROM workflow.workflows p WHERE p.id = w.part_of)
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Its jobs are started by the entry that holds the chain.';
    END IF;

    IF NOT (SELECT a.rolcanlogin FROM pg_catalog.pg_authid a WHERE a.oid = p_caller) THEN
        RAISE EXCEPTION 'role "%" cannot create jobs because it cannot log in', p_caller::regrole
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The tasks of a job run as the role that created it.',
                  HINT = 'Create the job as a role with LOGIN.';
    END IF;

    SELECT * INTO first FROM workflow.tasks s
     WHERE s.workflow_id = w.id AND s.phase = 'chain' AND s.position = 0;
    v_queue := workflow._job_queue(_create_job.queue, w.queue);

    -- never a silent job that no worker of this server will run
    PERFORM workflow._warn_unserved();

    IF _create_job.idempotency_key IS NULL THEN
        -- no key: a plain insert (no speculative insertion)
        next_id := nextval('workflow.jobs_id_seq');
        v_key := workflow._new_job_key(w, next_id, _create_job.params, _create_job.target, p_caller);
        INSERT INTO workflow.jobs AS j
            (id, root_id, workflow_id, workflow, version, params, target, priority, run_at,
             task_type, domain, created_by, queue, concurrency_key)
        VALUES (next_id, next_id, w.id, w.name, w.version, _create_job.params, _create_job.target,
                _create_job.priority, _create_job.run_at, first.task_type, _create_job.domain,
                p_caller::regrole, v_queue, v_key)
        RETURNING j.id INTO new_id;
        PERFORM workflow._wake_at_commit(first.task_type);
        RETURN new_id;
    END IF;
    LOOP
        next_id := nextval('workflow.jobs_id_seq');
        v_key := workflow._new_job_key(w, next_id, _create_job.params, _create_job.target, p_caller);
        INSERT INTO workflow.jobs AS j
            (id, root_id, workflow_id, workflow, version, params, target, priority, run_at,
             task_type, domain, idempotency_key, created_by, queue, concurrency_key)
        VALUES (next_id, next_id, w.id, w.name, w.version, _create_job.params, _create_job.target,
                _create_job.priority, _create_job.run_at, first.task_type, _create_job.domain,
                _create_job.idempotency_key, p_caller::regrole, v_queue, v_key)
        ON CONFLICT (workflow, created_by, idempotency_key)
            WHERE idempotency_key IS NOT NULL AND execution IN ('queued', 'running', 'waiting')
            DO NOTHING
        RETURNING j.id INTO new_id;
        IF new_id IS NOT NULL THEN
            PERFORM workflow._wake_at_commit(first.task_type);
            RETURN new_id;
        END IF;
        -- a live job of this role with this key exists: return it
        SELECT j.id INTO new_id FROM workflow.jobs j
         WHERE j.workflow = w.name AND j.created_by = p_caller::regrole
           AND j.idempotency_key = _create_job.idempotency_key
           AND j.execution IN ('queued', 'running', 'waiting');
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        -- it finished in between: try again
    END LOOP;
END
$$;
COMMENT ON FUNCTION workflow._create_job(text, jsonb, text, timestamptz, integer, text, integer, text, text, oid) IS
    'internal: implementation of workflow.create_job, with the calling role (src/api.c)';

-- The concurrency key of a new job of w (NULL when its workflow has no
-- concurrency_key): the definition's query, run as the job's creator.
CREATE OR REPLACE FUNCTION workflow._new_job_key(w workflow.workflows, id bigint, params jsonb, target text,
                                              p_caller oid)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN w.concurrency_key IS NOT NULL THEN
        workflow._concurrency_key(w.concurrency_key,
                                  jsonb_build_object('job', jsonb_build_object(
                                      'id', id, 'workflow', w.name, 'version', w.version,
                                      'params', params, 'target', target, 'attempt', 1)),
                                  p_caller, w.search_path, w.name)
    END
$$;
COMMENT ON FUNCTION workflow._new_job_key(workflow.workflows, bigint, jsonb, text, oid) IS
    'internal: the concurrency key of a new job (the definition''s concurrency_key, run as its creator)';

CREATE OR REPLACE FUNCTION workflow._get_job(id bigint, p_caller oid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    doc     jsonb;
BEGIN
    IF _get_job.id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO j FROM workflow.jobs jj WHERE jj.id = _get_job.id;
    IF NOT FOUND OR NOT workflow._may_see(j.created_by, p_caller) THEN
        RAISE EXCEPTION 'job % does not exist', _get_job.id
            USING ERRCODE = 'undefined_object';
    END IF;
    doc := to_jsonb(j) - 'workflow_id' - 'created_by';
    RETURN doc || jsonb_build_object(
        'created_by', j.created_by::text,
        'task', (SELECT s.name FROM workflow.tasks s
                  WHERE s.workflow_id = j.workflow_id AND s.phase = j.phase AND s.position = j.step),
        'tasks', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'task', r.task, 'phase', r.phase, 'step', r.step,
                       'job_attempt', r.job_attempt, 'attempt', r.attempt,
                       'fallback', r.fallback, 'status', r.status, 'runner_id', r.runner_id,
                       'started_at', r.started_at, 'finished_at', r.finished_at,
                       'duration_ms', round(extract(epoch FROM r.finished_at - r.started_at) * 1000, 3),
                       'output', r.output, 'error', r.error) ORDER BY r.id)
              FROM workflow.task_runs r WHERE r.job_id = j.id), '[]'::jsonb),
        'info', coalesce((
            SELECT jsonb_agg(jsonb_build_object('at', i.created_at, 'info', i.info) ORDER BY i.id)
              FROM workflow.job_info i WHERE i.job_id = j.id), '[]'::jsonb),
        'children', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', c.id, 'task', c.parent_task, 'branch', c.branch, 'index', c.child_index,
                       'workflow', c.workflow, 'execution', c.execution, 'result', c.result,
                       'error', c.error) ORDER BY c.id)
              FROM workflow.jobs c WHERE c.parent_id = j.id), '[]'::jsonb));
END
$$;
COMMENT ON FUNCTION workflow._get_job(bigint, oid) IS
    'internal: implementation of workflow.get_job, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._cancel_job(id bigint, reason text, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j   workflow.jobs;
    err jsonb;
BEGIN
    IF _cancel_job.reason IS NOT NULL THEN
        PERFORM workflow._check_payload(to_jsonb(_cancel_job.reason), 'cancel reason');
    END IF;
    j := workflow._lock_job(_cancel_job.id, p_caller);
    IF j.execution = 'canceled' OR (j.phase = 'oncancel' AND j.execution IN ('queued', 'running', 'waiting')) THEN
        RETURN false;       -- already canceled or being canceled
    END IF;
    IF j.execution IN ('succeeded', 'failed') THEN
        PERFORM workflow._wrong_state(j, 'cancel', 'queued, running or waiting');
    END IF;
    err := jsonb_build_object('message', 'job canceled', 'reason', _cancel_job.reason,
                              'canceled_by', p_caller::regrole::text);
    PERFORM workflow._cancel_in_progress(j, err);
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._cancel_job(bigint, text, oid) IS
    'internal: implementation of workflow.cancel_job, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._resume_job(id bigint, result jsonb, error text, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j   workflow.jobs;
BEGIN
    j := workflow._lock_job(_resume_job.id, p_caller);
    IF j.execution <> 'waiting' THEN
        PERFORM workflow._wrong_state(j, 'resume', 'waiting');
    END IF;
    IF j.waiting_for IN ('children', 'turn') THEN
        RAISE EXCEPTION 'cannot resume job % because it waits for %', j.id,
                        CASE j.waiting_for WHEN 'children' THEN 'its children' ELSE 'its turn among its siblings' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only a job that waits for resume_job, a timer or a signal can be resumed.';
    END IF;
    IF _resume_job.result IS NOT NULL THEN
        PERFORM workflow._check_payload(_resume_job.result, 'result');
    END IF;
    IF _resume_job.error IS NOT NULL THEN
        PERFORM workflow._check_payload(to_jsonb(_resume_job.error), 'error');
    END IF;
    IF _resume_job.error IS NOT NULL THEN
        PERFORM workflow._task_failed(j, jsonb_build_object('message', _resume_job.error), j.started_at);
    ELSE
        PERFORM workflow._task_succeeded(j, _resume_job.result, j.started_at);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._resume_job(bigint, jsonb, text, oid) IS
    'internal: implementation of workflow.resume_job, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._retry_job(id bigint, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    from_step integer;
BEGIN
    j := workflow._lock_job(_retry_job.id, p_caller);
    IF j.execution NOT IN ('failed', 'canceled') THEN
        PERFORM workflow._wrong_state(j, 'retry', 'failed or canceled');
    END IF;
    IF j.parent_id IS NOT NULL THEN
        RAISE EXCEPTION 'cannot retry job % because it is a child of job %', j.id, j.parent_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Retry its root job %s: the entry that started it runs again.', j.root_id);
    END IF;
    -- the first task of the chain without a success in this attempt
    SELECT min(s.position) INTO from_step FROM workflow.tasks s
     WHERE s.workflow_id = j.workflow_id AND s.phase = 'chain'
       AND NOT EXISTS (SELECT 1 FROM workflow.task_runs r
                        WHERE r.job_id = j.id AND r.job_attempt = j.attempt
                          AND r.phase = 'chain' AND r.step = s.position
                          AND r.status = 'succeeded');
    -- a queue dropped since the job ended: the default queue
    UPDATE workflow.jobs
       SET result = NULL, error = NULL, finished_at = NULL, deadline = NULL,
           queue = CASE WHEN workflow._queue_exists(j.queue) THEN workflow._job_queue(j.queue, NULL)
                        ELSE 'default' END
     WHERE workflow.jobs.id = j.id
    RETURNING * INTO j;
    PERFORM workflow._enqueue_task(j, 'chain', coalesce(from_step, 0), 1, now());
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._retry_job(bigint, oid) IS
    'internal: implementation of workflow.retry_job, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._add_info(id bigint, info jsonb, p_caller oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF _add_info.id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._check_payload(_add_info.info, 'info');
    IF NOT EXISTS (SELECT 1 FROM workflow.jobs j
                    WHERE j.id = _add_info.id AND workflow._may_see(j.created_by, p_caller)) THEN
        RAISE EXCEPTION 'job % does not exist', _add_info.id
            USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO workflow.job_info (job_id, info) VALUES (_add_info.id, _add_info.info);
END
$$;
COMMENT ON FUNCTION workflow._add_info(bigint, jsonb, oid) IS
    'internal: implementation of workflow.add_info, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._job_info(id bigint, p_caller oid)
RETURNS TABLE (created_at timestamptz, info jsonb)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF _job_info.id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM workflow.jobs j
                    WHERE j.id = _job_info.id AND workflow._may_see(j.created_by, p_caller)) THEN
        RAISE EXCEPTION 'job % does not exist', _job_info.id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN QUERY SELECT i.created_at, i.info FROM workflow.job_info i
                  WHERE i.job_id = _job_info.id ORDER BY i.id;
END
$$;
COMMENT ON FUNCTION workflow._job_info(bigint, oid) IS
    'internal: implementation of workflow.job_info, with the calling role (src/api.c)';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c)

CREATE OR REPLACE FUNCTION workflow.create_job(workflow text,
                                               params jsonb DEFAULT '{}',
                                               target text DEFAULT NULL,
                                               run_at timestamptz DEFAULT now(),
                                               priority integer DEFAULT 0,
                                               idempotency_key text DEFAULT NULL,
                                               version integer DEFAULT NULL,
                                               domain text DEFAULT NULL,
                                               queue text DEFAULT NULL)
RETURNS bigint
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.create_job(text, jsonb, text, timestamptz, integer, text, integer, text, text) IS
    'create a job of the latest (or given) version of a workflow; a live job with the same idempotency key is returned instead of a duplicate; domain routes its external tasks to pollers of that domain; queue overrides the workflow''s queue';

CREATE OR REPLACE FUNCTION workflow.get_job(id bigint)
RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.get_job(bigint) IS
    'the whole job as one document: state, params, current task, every task attempt with timings, output and error, and its info log';

CREATE OR REPLACE FUNCTION workflow.cancel_job(id bigint, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.cancel_job(bigint, text) IS
    'cancel a queued, waiting or running job (its oncancel chain runs); false if it is already canceled';

CREATE OR REPLACE FUNCTION workflow.resume_job(id bigint, result jsonb DEFAULT NULL, error text DEFAULT NULL)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.resume_job(bigint, jsonb, text) IS
    'resume a waiting job: its current task succeeds with result, or fails with error';

CREATE OR REPLACE FUNCTION workflow.retry_job(id bigint)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.retry_job(bigint) IS
    'queue a failed or canceled job again, from the first task of its chain that has not succeeded';

CREATE OR REPLACE FUNCTION workflow.add_info(id bigint, info jsonb)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.add_info(bigint, jsonb) IS
    'append progress information to a job (node-workflow info)';

CREATE OR REPLACE FUNCTION workflow.job_info(id bigint)
RETURNS TABLE (created_at timestamptz, info jsonb)
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.job_info(bigint) IS
    'the progress information of a job, oldest first';
