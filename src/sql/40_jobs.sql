-- Jobs API
-------------------------------------------------------------------------------

-- The workflow version a new root job runs: the latest of the name, or
-- the given version; not a chain of a control-flow entry.  The creator
-- must be able to log in (the job's tasks run as that role).  Shared by
-- create_job and create_jobs.
CREATE OR REPLACE FUNCTION workflow._job_workflow(workflow text, version integer, p_caller oid)
RETURNS workflow.workflows
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    w       workflow.workflows;
BEGIN
    IF _job_workflow.workflow IS NULL THEN
        RAISE EXCEPTION 'workflow name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _job_workflow.version IS NULL THEN
        SELECT * INTO w FROM workflow.workflows ww
         WHERE ww.name = _job_workflow.workflow ORDER BY ww.version DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'workflow "%" does not exist', _job_workflow.workflow
                USING ERRCODE = 'undefined_object',
                      HINT = 'Create it with workflow.create_workflow().';
        END IF;
    ELSE
        SELECT * INTO w FROM workflow.workflows ww
         WHERE ww.name = _job_workflow.workflow AND ww.version = _job_workflow.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'version % of workflow "%" does not exist',
                            _job_workflow.version, _job_workflow.workflow
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    IF w.part_of IS NOT NULL THEN
        RAISE EXCEPTION 'workflow "%" is a chain of workflow "%"', _job_workflow.workflow,
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
    RETURN w;
END
$$;
COMMENT ON FUNCTION workflow._job_workflow(text, integer, oid) IS
    'internal: the workflow version a new job of create_job or create_jobs runs, checked, and whether its creator may log in';

-- The run_at of new jobs, checked.  Claim order is priority, then run_at:
-- a role that is not an administrator cannot put its jobs before other
-- roles' jobs, neither with a priority above workflow.max_user_priority
-- nor with a run_at in the past (a time already passed means "now").
-- Shared by create_job and create_jobs.
CREATE OR REPLACE FUNCTION workflow._job_run_at(run_at timestamptz, priority integer, p_caller oid)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT isfinite(run_at) THEN
        RAISE EXCEPTION 'run_at must be a finite time, not %', run_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_has_role(p_caller, 'workflow_admin', 'MEMBER') THEN
        IF priority > current_setting('workflow.max_user_priority')::integer THEN
            RAISE EXCEPTION 'priority % is higher than this role may use', priority
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Roles that are not members of workflow_admin may use priorities up to workflow.max_user_priority (%s).',
                                      current_setting('workflow.max_user_priority')),
                      HINT = 'An administrator can allow more for one role with ALTER ROLE ... SET workflow.max_user_priority.';
        END IF;
        RETURN GREATEST(run_at, now());
    END IF;
    RETURN run_at;
END
$$;
COMMENT ON FUNCTION workflow._job_run_at(timestamptz, integer, oid) IS
    'internal: the run_at of new jobs of create_job or create_jobs: finite; for roles that are not administrators, not in the past and with a priority they may use';

-- An idempotency key is one job's for as long as that job exists: asking
-- again with the key returns the job when the request is the same (same
-- workflow, params and target, and version when one is given), and is
-- refused when it differs.  Priority, run_at and domain are not compared.
CREATE OR REPLACE FUNCTION workflow._check_idempotent(j workflow.jobs, workflow text, version integer,
                                                     params jsonb, target text)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    differs text;
BEGIN
    differs := CASE
        WHEN j.workflow <> workflow
            THEN format('The job is of workflow "%s", not "%s".', j.workflow, workflow)
        WHEN j.version <> version
            THEN format('The job is of version %s of workflow "%s", not version %s.', j.version, j.workflow, version)
        WHEN j.params <> params
            THEN 'The job has other params.'
        WHEN j.target IS DISTINCT FROM target
            THEN format('The job has %s; the call gives %s.',
                        coalesce('target ' || quote_literal(left(j.target, 200)), 'no target'),
                        coalesce('target ' || quote_literal(left(target, 200)), 'no target'))
        END;
    IF differs IS NOT NULL THEN
        RAISE EXCEPTION 'idempotency key "%" is already used by job %', left(j.idempotency_key, 200), j.id
            USING ERRCODE = 'unique_violation',
                  DETAIL = differs,
                  HINT = 'A key stands for one job for as long as the job exists: use another key for another job.';
    END IF;
    RETURN j.id;
END
$$;
COMMENT ON FUNCTION workflow._check_idempotent(workflow.jobs, text, integer, jsonb, text) IS
    'internal: the id of the job that holds an idempotency key, or an error (23505) when the request differs from that job''s';

CREATE OR REPLACE FUNCTION workflow._create_job(workflow text, params jsonb, target text, run_at timestamptz, priority integer, idempotency_key text, version integer, domain text, queue text, p_caller oid)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    w       workflow.workflows;
    first_type text;
    held    workflow.jobs;
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
    PERFORM workflow._check_job_args(_create_job.params, _create_job.target,
                                     _create_job.idempotency_key, NULL);
    IF _create_job.domain IS NOT NULL AND _create_job.domain !~ workflow._name_pattern() THEN
        RAISE EXCEPTION 'invalid domain "%"', left(_create_job.domain, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A domain is 1 to 128 letters, digits, "_", "-" or ".".';
    END IF;
    _create_job.run_at := workflow._job_run_at(_create_job.run_at, _create_job.priority, p_caller);
    w := workflow._job_workflow(_create_job.workflow, _create_job.version, p_caller);
    SELECT s.task_type INTO first_type FROM workflow.tasks s
     WHERE s.workflow_id = w.id AND s.phase = 'chain' AND s.position = 0;
    v_queue := coalesce(_create_job.queue, w.queue);
    IF v_queue <> 'default' THEN
        v_queue := workflow._job_queue(v_queue);
    END IF;

    -- never a silent job that no worker of this server will run
    PERFORM workflow._warn_unserved();

    IF _create_job.idempotency_key IS NULL THEN
        -- no key: a plain insert (no speculative insertion)
        next_id := nextval('workflow.jobs_id_seq');
        IF w.concurrency_key IS NOT NULL THEN
            v_key := workflow._new_job_key(w, next_id, _create_job.params, _create_job.target, p_caller);
        END IF;
        INSERT INTO workflow.jobs AS j
            (id, root_id, workflow_id, workflow, version, params, target, priority, run_at,
             task_type, domain, created_by, queue, concurrency_key)
        VALUES (next_id, next_id, w.id, w.name, w.version, _create_job.params, _create_job.target,
                _create_job.priority, _create_job.run_at, first_type, _create_job.domain,
                p_caller::regrole, v_queue, v_key)
        RETURNING j.id INTO new_id;
        PERFORM workflow._wake_at_commit(first_type);
        RETURN new_id;
    END IF;
    LOOP
        -- the job that holds the key (unique per creator, whatever its
        -- state, until it is pruned)
        SELECT * INTO held FROM workflow.jobs j
         WHERE j.created_by = p_caller::regrole AND j.idempotency_key = _create_job.idempotency_key;
        IF FOUND THEN
            RETURN workflow._check_idempotent(held, w.name, _create_job.version,
                                              _create_job.params, _create_job.target);
        END IF;
        next_id := nextval('workflow.jobs_id_seq');
        IF w.concurrency_key IS NOT NULL THEN
            v_key := workflow._new_job_key(w, next_id, _create_job.params, _create_job.target, p_caller);
        END IF;
        INSERT INTO workflow.jobs AS j
            (id, root_id, workflow_id, workflow, version, params, target, priority, run_at,
             task_type, domain, idempotency_key, created_by, queue, concurrency_key)
        VALUES (next_id, next_id, w.id, w.name, w.version, _create_job.params, _create_job.target,
                _create_job.priority, _create_job.run_at, first_type, _create_job.domain,
                _create_job.idempotency_key, p_caller::regrole, v_queue, v_key)
        ON CONFLICT (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL
            DO NOTHING
        RETURNING j.id INTO new_id;
        IF new_id IS NOT NULL THEN
            PERFORM workflow._wake_at_commit(first_type);
            RETURN new_id;
        END IF;
        -- a concurrent transaction created a job with the key and
        -- committed: compare with it on the next round
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

-- Many jobs of one workflow in one call, each with the checks and the
-- idempotency of create_job; the ids in the order of the elements.  The
-- jobs are made by set-based statements over the arrays (a call of 10,000
-- elements is a few statements, not 10,000 calls).
CREATE OR REPLACE FUNCTION workflow._create_jobs(workflow text, params jsonb[], targets text[], run_at timestamptz, priority integer, idempotency_keys text[], queue text, p_caller oid)
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    n           integer;
    w           workflow.workflows;
    first_type  text;
    bad         record;
    -- the distinct idempotency keys, in the order of their first element,
    -- with that element's params and target, and the job of each
    keys        text[];
    key_params  jsonb[];
    key_targets text[];
    key_ids     bigint[];
    new_keys    text[];
    new_params  jsonb[];
    new_targets text[];
    held        integer;
    made        integer := 0;
    added       integer;
    v_queue     text;
BEGIN
    IF workflow IS NULL THEN
        RAISE EXCEPTION 'workflow name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF params IS NULL OR run_at IS NULL OR priority IS NULL THEN
        RAISE EXCEPTION 'params, run_at and priority must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF array_ndims(params) > 1 OR array_ndims(targets) > 1 OR array_ndims(idempotency_keys) > 1 THEN
        RAISE EXCEPTION 'params, targets and idempotency_keys must be one-dimensional arrays'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    n := cardinality(params);
    IF n > 100000 THEN
        RAISE EXCEPTION 'create_jobs creates at most 100000 jobs per call'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('params has %s elements.', n),
                  HINT = 'Split the jobs into several calls; one transaction may hold them all.';
    END IF;
    IF cardinality(targets) <> n OR cardinality(idempotency_keys) <> n THEN
        RAISE EXCEPTION 'targets and idempotency_keys must have as many elements as params'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Lengths: params %s, targets %s, idempotency_keys %s.', n,
                                  coalesce(cardinality(targets)::text, 'none (NULL)'),
                                  coalesce(cardinality(idempotency_keys)::text, 'none (NULL)')),
                  HINT = 'Pass NULL for no targets or no keys at all, or a NULL element for one job without.';
    END IF;
    run_at := workflow._job_run_at(run_at, priority, p_caller);
    w := workflow._job_workflow(workflow, NULL, p_caller);
    v_queue := coalesce(queue, w.queue);
    IF v_queue <> 'default' THEN
        v_queue := workflow._job_queue(v_queue);
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;
    -- each element: the checks of create_job, the element named in the error
    PERFORM FROM unnest(params, targets, idempotency_keys) WITH ORDINALITY AS u(p, t, k, o)
     WHERE NOT workflow._check_job_args(u.p, u.t, u.k, u.o::integer);
    SELECT s.task_type INTO first_type FROM workflow.tasks s
     WHERE s.workflow_id = w.id AND s.phase = 'chain' AND s.position = 0;

    -- never a silent job that no worker of this server will run
    PERFORM workflow._warn_unserved();

    IF cardinality(array_remove(idempotency_keys, NULL)) > 0 THEN
        -- elements with the same key are one job: they must be the same
        -- request
        SELECT u.o, u.k, u.fo, u.p <> u.fp AS params_differ INTO bad
          FROM (SELECT x.o, x.k, x.p, x.t,
                       first_value(x.o) OVER f AS fo, first_value(x.p) OVER f AS fp,
                       first_value(x.t) OVER f AS ft
                  FROM unnest(params, targets, idempotency_keys) WITH ORDINALITY AS x(p, t, k, o)
                 WHERE x.k IS NOT NULL
                WINDOW f AS (PARTITION BY x.k ORDER BY x.o)) u
         WHERE u.p <> u.fp OR u.t IS DISTINCT FROM u.ft
         ORDER BY u.o LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'idempotency key "%" is given to elements % and % for different jobs',
                            left(bad.k, 200), bad.fo, bad.o
                USING ERRCODE = 'unique_violation',
                      DETAIL = CASE WHEN bad.params_differ THEN 'Their params differ.'
                                    ELSE 'Their targets differ.' END;
        END IF;
        SELECT array_agg(f.k ORDER BY f.o), array_agg(f.p ORDER BY f.o), array_agg(f.t ORDER BY f.o)
          INTO keys, key_params, key_targets
          FROM (SELECT DISTINCT ON (x.k) x.k, x.p, x.t, x.o
                  FROM unnest(params, targets, idempotency_keys) WITH ORDINALITY AS x(p, t, k, o)
                 WHERE x.k IS NOT NULL
                 ORDER BY x.k, x.o) f;
        LOOP
            -- keys that jobs hold already: the same request, or an error
            -- (for the first such element)
            PERFORM workflow._check_idempotent(h.j, w.name, NULL, h.p, h.t)
               FROM (SELECT j AS j, f.p, f.t
                       FROM unnest(keys, key_params, key_targets) WITH ORDINALITY AS f(k, p, t, o)
                       JOIN workflow.jobs j
                         ON j.created_by = p_caller::regrole AND j.idempotency_key = f.k
                      ORDER BY f.o OFFSET 0) h;
            -- the other keys: new jobs, in the order of their elements, with
            -- ids drawn in that order (whatever the plan of the anti-join)
            SELECT array_agg(f.k ORDER BY f.o), array_agg(f.p ORDER BY f.o), array_agg(f.t ORDER BY f.o)
              INTO new_keys, new_params, new_targets
              FROM unnest(keys, key_params, key_targets) WITH ORDINALITY AS f(k, p, t, o)
             WHERE NOT EXISTS (SELECT FROM workflow.jobs x
                                WHERE x.created_by = p_caller::regrole AND x.idempotency_key = f.k);
            WITH ins AS (
                INSERT INTO workflow.jobs AS j
                    (id, root_id, workflow_id, workflow, version, params, target, priority, run_at,
                     task_type, idempotency_key, created_by, queue, concurrency_key)
                SELECT s.id, s.id, w.id, w.name, w.version, s.p, s.t, priority, run_at,
                       first_type, s.k, p_caller::regrole, v_queue,
                       CASE WHEN w.concurrency_key IS NOT NULL
                            THEN workflow._new_job_key(w, s.id, s.p, s.t, p_caller) END
                  FROM unnest(new_keys, new_params, new_targets,
                              ARRAY(SELECT nextval('workflow.jobs_id_seq')
                                      FROM generate_series(1, coalesce(cardinality(new_keys), 0)) g
                                     ORDER BY g)) AS s(k, p, t, id)
                ON CONFLICT (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL
                    DO NOTHING
                RETURNING 1)
            SELECT count(*) INTO added FROM ins;
            made := made + added;
            SELECT array_agg(x.id ORDER BY f.o), count(x.id) INTO key_ids, held
              FROM unnest(keys) WITH ORDINALITY AS f(k, o)
              LEFT JOIN workflow.jobs x
                ON x.created_by = p_caller::regrole AND x.idempotency_key = f.k;
            -- every key has its job, unless a concurrent transaction made
            -- one first (the insert waited for it to commit): compare with
            -- that job on the next round
            EXIT WHEN held = cardinality(keys);
        END LOOP;
    END IF;

    -- the elements without a key; the ids in the order of the elements
    -- (nextval runs in the order of the scan of the arrays)
    RETURN QUERY
    WITH e AS MATERIALIZED (
        SELECT u.o, u.k, u.p, u.t,
               CASE WHEN u.k IS NULL THEN nextval('workflow.jobs_id_seq') END AS id
          FROM unnest(params, targets, idempotency_keys) WITH ORDINALITY AS u(p, t, k, o)),
    ins AS (
        INSERT INTO workflow.jobs AS j
            (id, root_id, workflow_id, workflow, version, params, target, priority, run_at,
             task_type, created_by, queue, concurrency_key)
        SELECT e.id, e.id, w.id, w.name, w.version, e.p, e.t, priority, run_at,
               first_type, p_caller::regrole, v_queue,
               CASE WHEN w.concurrency_key IS NOT NULL
                    THEN workflow._new_job_key(w, e.id, e.p, e.t, p_caller) END
          FROM e WHERE e.k IS NULL)
    SELECT coalesce(e.id, m.id)
      FROM e LEFT JOIN unnest(keys, key_ids) AS m(k, id) ON m.k = e.k
     ORDER BY e.o;
    made := made + n - coalesce(cardinality(array_remove(idempotency_keys, NULL)), 0);
    IF made > 0 THEN
        PERFORM workflow._wake_at_commit(first_type, made);
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._create_jobs(text, jsonb[], text[], timestamptz, integer, text[], text, oid) IS
    'internal: implementation of workflow.create_jobs, with the calling role (src/api.c)';

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
           queue = CASE WHEN workflow._queue_exists(j.queue) THEN workflow._job_queue(j.queue)
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
    'create a job of the latest (or given) version of a workflow; the job that holds the idempotency key is returned instead of a duplicate (an error if it was created with other arguments); domain routes its external tasks to pollers of that domain; queue overrides the workflow''s queue';

CREATE OR REPLACE FUNCTION workflow.create_jobs(workflow text,
                                                params jsonb[],
                                                targets text[] DEFAULT NULL,
                                                run_at timestamptz DEFAULT now(),
                                                priority integer DEFAULT 0,
                                                idempotency_keys text[] DEFAULT NULL,
                                                queue text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.create_jobs(text, jsonb[], text[], timestamptz, integer, text[], text) IS
    'create one job of the latest version of a workflow per element of params (with the target and idempotency key of the same element), in one call; returns their ids in the order of the elements; queue overrides the workflow''s queue';

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
