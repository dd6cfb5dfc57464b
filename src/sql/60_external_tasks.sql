-------------------------------------------------------------------------------
-- External task protocol (Conductor's worker calls); the type workflow.task
-- and the table workflow.task_types are in 01_types.sql and 02_tables.sql
-------------------------------------------------------------------------------

-- Validate a task type or domain name.
CREATE OR REPLACE FUNCTION workflow._check_name(value text, what text, nullable boolean)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        IF nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '% must not be null', what
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF value !~ workflow._name_pattern() THEN
        RAISE EXCEPTION 'invalid % "%"', what, left(value, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A %s is 1 to 128 letters, digits, "_", "-" or ".".', what);
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._check_name(text, text, boolean) IS
    'internal: validate a task type or domain name';

-- Claim up to p_count runnable tasks of a type for a worker: the worker's
-- domain first, then tasks without a domain.  Writes nothing when there is
-- nothing to claim, so that a long poll holds no transaction id.
CREATE OR REPLACE FUNCTION workflow._claim_tasks(p_type text, p_worker text, p_count integer, p_domain text)
RETURNS SETOF workflow.task
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- see _runner_claim
AS $$
DECLARE
    cand        record;
    ids         bigint[] := '{}';
    taken       text[] := '{}';
    room        jsonb := '{}';
    next_room   jsonb;
    remaining   integer := p_count;
    pass        integer;
    default_lease interval := current_setting('workflow.task_lease')::interval;
    cur         refcursor;
BEGIN
    IF EXISTS (SELECT 1 FROM workflow.task_types t WHERE t.task_type = p_type AND t.paused) THEN
        RETURN;
    END IF;
    FOR pass IN 1..2 LOOP
        CONTINUE WHEN pass = 1 AND p_domain IS NULL;
        EXIT WHEN remaining = 0;
        -- each open queue scanned in claim order in its index, (task_type,
        -- [domain,] queue, priority DESC, run_at, id), and merged: two
        -- plain queries, one per partial index ("domain IS NULL" is no
        -- equality); the clock, not now(): a long poll's transaction is old
        IF pass = 1 THEN
            OPEN cur FOR
                SELECT c.*, o.key_room, o.key_limit, o.rated
                  FROM workflow._queue_open(remaining, p_type, NULL) o
                 CROSS JOIN LATERAL (
                    SELECT j.id, j.created_by, j.target, j.queue, j.concurrency_key,
                           j.priority, j.run_at
                      FROM workflow.jobs j
                     WHERE j.execution = 'queued' AND j.task_type = p_type AND j.domain = p_domain
                       AND j.queue = o.queue
                       AND j.run_at <= clock_timestamp()
                       AND (o.full_keys IS NULL OR j.concurrency_key IS NULL
                            OR j.concurrency_key <> ALL (o.full_keys))
                       AND (j.target IS NULL
                            OR workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at,
                                                     clock_timestamp()))
                     ORDER BY j.priority DESC, j.run_at, j.id
                     LIMIT o.budget
                       FOR NO KEY UPDATE SKIP LOCKED) c
                 ORDER BY c.priority DESC, c.run_at, c.id
                 LIMIT remaining;
        ELSE
            OPEN cur FOR
                SELECT c.*, o.key_room, o.key_limit, o.rated
                  FROM workflow._queue_open(remaining, p_type, NULL) o
                 CROSS JOIN LATERAL (
                    SELECT j.id, j.created_by, j.target, j.queue, j.concurrency_key,
                           j.priority, j.run_at
                      FROM workflow.jobs j
                     WHERE j.execution = 'queued' AND j.task_type = p_type AND j.domain IS NULL
                       AND j.queue = o.queue
                       AND j.run_at <= clock_timestamp()
                       AND (o.full_keys IS NULL OR j.concurrency_key IS NULL
                            OR j.concurrency_key <> ALL (o.full_keys))
                       AND (j.target IS NULL
                            OR workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at,
                                                     clock_timestamp()))
                     ORDER BY j.priority DESC, j.run_at, j.id
                     LIMIT o.budget
                       FOR NO KEY UPDATE SKIP LOCKED) c
                 ORDER BY c.priority DESC, c.run_at, c.id
                 LIMIT remaining;
        END IF;
        LOOP
            FETCH cur INTO cand;
            EXIT WHEN NOT FOUND;
            -- at most key_concurrency running per concurrency key
            IF cand.key_limit IS NOT NULL THEN
                next_room := workflow._key_admit(room, cand.queue, cand.concurrency_key,
                                                 cand.key_room, cand.key_limit);
                CONTINUE WHEN next_room IS NULL;
            END IF;
            CONTINUE WHEN cand.target IS NOT NULL
                      AND NOT workflow._take_target(cand.id, cand.created_by, cand.target);
            IF cand.key_limit IS NOT NULL THEN
                room := next_room;
            END IF;
            ids := ids || cand.id;
            IF cand.rated THEN
                taken := taken || cand.queue;
            END IF;
            remaining := remaining - 1;
        END LOOP;
        CLOSE cur;
    END LOOP;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(taken) > 0 THEN
        PERFORM workflow._queue_take(taken);
    END IF;
    -- one statement for the whole batch, in claim order
    RETURN QUERY
        WITH u AS (
            UPDATE workflow.jobs cj
               SET execution = 'running', runner_id = p_worker,
                   lease = workflow._new_lease(), claimed_at = clock_timestamp(),
                   -- saturating at 100 years: the timeout of a definition
                   -- stored before timeouts were bounded must not make the
                   -- addition overflow and fail every claim of the type
                   lease_expires_at = clock_timestamp()
                       + CASE WHEN coalesce(s.timeout, default_lease) > interval '100 years'
                              THEN interval '100 years'
                              ELSE coalesce(s.timeout, default_lease) END,
                   started_at = coalesce(cj.started_at, clock_timestamp()),
                   deadline = coalesce(cj.deadline,
                                       clock_timestamp()
                                       + CASE WHEN w.timeout > interval '100 years'
                                              THEN interval '100 years' ELSE w.timeout END)
              FROM workflow.tasks s, workflow.workflows w
             WHERE cj.id = ANY (ids)
               AND s.workflow_id = cj.workflow_id AND s.phase = cj.phase AND s.position = cj.step
               AND w.id = cj.workflow_id
            RETURNING cj.*, s.name AS task_name)
        SELECT u.id, u.task_name, p_type, u.domain,
               jsonb_build_object(
                   'job', jsonb_build_object('id', u.id, 'workflow', u.workflow, 'version', u.version,
                                             'params', u.params, 'target', u.target, 'attempt', u.attempt),
                   'task', jsonb_build_object('name', u.task_name, 'attempt', u.task_attempt),
                   'results', workflow._results(u.id, u.attempt, u.phase, u.step)),
               u.task_attempt, u.lease, u.lease_expires_at
          FROM u
          JOIN unnest(ids) WITH ORDINALITY AS o(id, n) ON o.id = u.id
         ORDER BY o.n;
END
$$;
COMMENT ON FUNCTION workflow._claim_tasks(text, text, integer, text) IS
    'internal: claim external tasks of a type for a worker (SKIP LOCKED, domain first, lock by target)';

-- When the next task of a type (the worker's domain, or none) becomes due,
-- or NULL: a long poll sleeps no longer than that, since no commit will
-- wake it when a retry's backoff or a requeue's delay ends.  A due task of
-- a queue with limits, which the claim may have left for its limits, is
-- looked at again after workflow.run_interval, as the in-server runners do.
CREATE OR REPLACE FUNCTION workflow._next_due(p_type text, p_domain text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT min(CASE WHEN q.name IS NULL THEN j.run_at
                            ELSE greatest(j.run_at, clock_timestamp()
                                          + current_setting('workflow.run_interval')::interval) END)
              FROM workflow.jobs j
              LEFT JOIN workflow.queues q
                ON q.name = j.queue
               AND (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.key_concurrency IS NOT NULL)
             WHERE j.execution = 'queued' AND j.task_type = p_type
               AND (j.domain IS NULL OR j.domain = p_domain));
END
$$;
COMMENT ON FUNCTION workflow._next_due(text, text) IS
    'internal: when the next queued task of a type becomes due (bounds a long poll''s sleep)';

-- May p_caller use runner id p_worker?  Runner ids belong to the role that
-- registered them: a new id may be used by anyone (it becomes the user's
-- when registered), a registered one by its owner and by members of
-- workflow_admin.  The ids of the in-server workers (runner-N, sweeper,
-- and any row of kind runner or sweeper) are refused to every SQL caller.
-- Read-only, so a poll checks this before it waits; raises 42501.
CREATE OR REPLACE FUNCTION workflow._check_external_worker(p_worker text, p_caller oid)
RETURNS void
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r   workflow.runners;
BEGIN
    IF p_worker ~ '^runner-[0-9]+$' OR p_worker = 'sweeper' THEN
        RAISE EXCEPTION 'runner id "%" is reserved for an in-server worker', p_worker
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The in-server runners are named runner-N and the sweeper sweeper; no SQL caller may use their ids.',
                  HINT = 'Give every external worker an id of its own.';
    END IF;
    SELECT * INTO r FROM workflow.runners x WHERE x.id = p_worker;
    IF NOT FOUND AND p_worker IS NOT NULL THEN
        RETURN;
    END IF;
    IF r.kind <> 'external' THEN
        RAISE EXCEPTION 'runner id "%" is reserved for an in-server worker', p_worker
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Runner "%s" is of kind %s; no SQL caller may use its id.', p_worker, r.kind),
                  HINT = 'Give every external worker an id of its own.';
    END IF;
    IF r.owner IS DISTINCT FROM p_caller
       AND NOT coalesce(pg_has_role(p_caller, 'workflow_admin', 'MEMBER'), false) THEN
        RAISE EXCEPTION 'permission denied for runner "%"', coalesce(p_worker, '')
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = CASE WHEN p_worker IS NULL THEN 'The task is held by no runner.'
                                ELSE format('The runner id was registered by role %s.', r.owner) END,
                  HINT = 'A worker uses only runner ids it registered, and reports only tasks it claimed under them.';
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._check_external_worker(text, oid) IS
    'internal: refuse a runner id that belongs to another role (unless the caller is an administrator) or to an in-server worker';

CREATE OR REPLACE FUNCTION workflow._poll_tasks(task_type text, worker_id text, count integer,
                                                wait interval, domain text, p_caller oid)
RETURNS SETOF workflow.task
LANGUAGE c CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'workflow_poll_tasks';
COMMENT ON FUNCTION workflow._poll_tasks(text, text, integer, interval, text, oid) IS
    'internal: implementation of workflow.poll_tasks, with the calling role (src/api.c)';

-- The running job of a lease, locked, or the standard stale-lease error.
-- Returns NULL when the lease's outcome was already recorded as `status'
-- (a repeated call).  The task must have been claimed under a runner id of
-- p_caller (or p_caller is an administrator): a lease alone is not enough.
CREATE OR REPLACE FUNCTION workflow._leased_job(p_job bigint, p_lease bigint, p_status text, p_caller oid)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    j       workflow.jobs;
    worker  text;
BEGIN
    IF p_lease IS NULL THEN
        RAISE EXCEPTION 'lease must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    j := workflow._lock_job(p_job);
    IF j.execution = 'running' AND j.lease = p_lease THEN
        PERFORM workflow._check_external_worker(j.runner_id, p_caller);
        IF j.task_type IS NULL THEN
            -- an SQL or wait task (or a fallback), claimed with run_job
            RAISE EXCEPTION 'job % is not at an external task', p_job
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Its current task runs inside the database.',
                      HINT = 'A job claimed with run_job is ended with finish_job.';
        END IF;
        RETURN j;
    END IF;
    IF p_status IS NOT NULL THEN
        SELECT r.runner_id INTO worker FROM workflow.task_runs r
         WHERE r.job_id = p_job AND r.lease = p_lease AND r.status = p_status
           -- the sweeper's record of an expired lease is no report of the
           -- worker
           AND NOT coalesce((r.error ->> 'lease_expired')::boolean, false)
         LIMIT 1;
        IF FOUND THEN
            PERFORM workflow._check_external_worker(worker, p_caller);
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION 'lease % of job % is no longer valid', p_lease, p_job
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = format('The job is %s%s.', j.execution,
                              CASE WHEN j.lease IS NOT NULL THEN ' under another lease' ELSE '' END),
              HINT = 'The lease expired and the task was handed out again, or the job was canceled; drop this result.';
END
$$;
COMMENT ON FUNCTION workflow._leased_job(bigint, bigint, text, oid) IS
    'internal: lock the job a lease belongs to, refusing stale leases and tasks claimed under another role''s runner id';

-- The rules of a task's completion (src/report.c handles the usual case
-- without PL/pgSQL and calls this for every other one).  Returns whether
-- this call recorded the success (false: an idempotent repeat) and the
-- worker whose heartbeat to record.
CREATE OR REPLACE FUNCTION workflow._complete_task_general(job_id bigint, lease bigint, output jsonb,
                                                           p_caller oid,
                                                           OUT recorded boolean, OUT worker text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    prev    jsonb;
BEGIN
    j := workflow._leased_job(_complete_task_general.job_id, _complete_task_general.lease,
                              'succeeded', p_caller);
    IF j IS NULL THEN
        -- completed before under this lease: the same output is an
        -- idempotent repeat, another one a mistake
        SELECT r.output INTO prev FROM workflow.task_runs r
         WHERE r.job_id = _complete_task_general.job_id AND r.lease = _complete_task_general.lease
           AND r.status = 'succeeded';
        IF prev IS DISTINCT FROM _complete_task_general.output THEN
            RAISE EXCEPTION 'task of job % was already completed under lease % with another output',
                            _complete_task_general.job_id, _complete_task_general.lease
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        recorded := false;
        RETURN;
    END IF;
    PERFORM workflow._task_succeeded(j, _complete_task_general.output, j.claimed_at);
    recorded := true;
    worker := j.runner_id;
END
$$;
COMMENT ON FUNCTION workflow._complete_task_general(bigint, bigint, jsonb, oid) IS
    'internal: record an external task''s success in every case (stale leases, repeats, targets, other chains)';

CREATE OR REPLACE FUNCTION workflow._complete_task(job_id bigint, lease bigint, output jsonb, p_caller oid)
RETURNS boolean
LANGUAGE c CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'workflow_complete_task';
COMMENT ON FUNCTION workflow._complete_task(bigint, bigint, jsonb, oid) IS
    'internal: implementation of workflow.complete_task, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._complete_tasks(job_ids bigint[], leases bigint[], outputs jsonb[],
                                                    p_caller oid)
RETURNS TABLE (job_id bigint, recorded boolean)
LANGUAGE c CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'workflow_complete_tasks';
COMMENT ON FUNCTION workflow._complete_tasks(bigint[], bigint[], jsonb[], oid) IS
    'internal: implementation of workflow.complete_tasks, with the calling role (src/api.c)';

-- Implementation of workflow.fail_task, with the calling role (src/api.c).
CREATE OR REPLACE FUNCTION workflow._fail_task(job_id bigint, lease bigint, error text,
                                               retryable boolean, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
BEGIN
    IF _fail_task.error IS NULL OR _fail_task.retryable IS NULL THEN
        RAISE EXCEPTION 'error and retryable must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._check_payload(to_jsonb(_fail_task.error), 'error');
    j := workflow._leased_job(_fail_task.job_id, _fail_task.lease, 'failed', p_caller);
    IF j IS NULL THEN
        RETURN false;       -- reported before under this lease
    END IF;
    PERFORM workflow._task_failed(j, jsonb_build_object('message', _fail_task.error,
                                                        'worker', j.runner_id),
                                  j.claimed_at, _fail_task.retryable);
    PERFORM workflow._external_heartbeat(j.runner_id, p_caller);
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._fail_task(bigint, bigint, text, boolean, oid) IS
    'internal: implementation of workflow.fail_task, with the calling role (src/api.c)';

-- Implementation of workflow.extend_task, with the calling role
-- (src/api.c).  The new end of the lease saturates at 100 years from now:
-- the timeout of a definition stored before timeouts were bounded cannot
-- make the addition overflow.
CREATE OR REPLACE FUNCTION workflow._extend_task(job_id bigint, lease bigint, by interval, p_caller oid)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    s       workflow.tasks;
    length  interval;
BEGIN
    IF _extend_task.by IS NOT NULL
       AND (_extend_task.by <= interval '0' OR _extend_task.by > interval '1 day') THEN
        RAISE EXCEPTION 'a lease can be extended by more than 0 and at most 1 day, not %', _extend_task.by
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    j := workflow._leased_job(_extend_task.job_id, _extend_task.lease, NULL, p_caller);
    s := workflow._task_of(j);
    length := coalesce(_extend_task.by, s.timeout, current_setting('workflow.task_lease')::interval);
    IF length > interval '100 years' THEN
        length := interval '100 years';
    END IF;
    UPDATE workflow.jobs jj
       SET lease_expires_at = clock_timestamp() + length
     WHERE jj.id = j.id
    RETURNING * INTO j;
    PERFORM workflow._external_heartbeat(j.runner_id, p_caller);
    RETURN j.lease_expires_at;
END
$$;
COMMENT ON FUNCTION workflow._extend_task(bigint, bigint, interval, oid) IS
    'internal: implementation of workflow.extend_task, with the calling role (src/api.c)';

-- Implementation of workflow.requeue_task, with the calling role
-- (src/api.c).  The delay is a user-given interval: 0 to 100 years.
CREATE OR REPLACE FUNCTION workflow._requeue_task(job_id bigint, lease bigint, "after" interval, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    s       workflow.tasks;
BEGIN
    IF _requeue_task."after" IS NULL THEN
        RAISE EXCEPTION 'after must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _requeue_task."after" < interval '0' OR _requeue_task."after" > interval '100 years' THEN
        RAISE EXCEPTION 'requeue delay must be between 0 and 100 years'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    j := workflow._leased_job(_requeue_task.job_id, _requeue_task.lease, 'requeued', p_caller);
    IF j IS NULL THEN
        RETURN false;
    END IF;
    s := workflow._task_of(j);
    PERFORM workflow._record_run(j, s.name, 'requeued', j.claimed_at, NULL, NULL);
    PERFORM workflow._enqueue_task(j, j.phase, j.step, j.task_attempt,
                                   clock_timestamp() + _requeue_task."after", j.in_fallback);
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._requeue_task(bigint, bigint, interval, oid) IS
    'internal: implementation of workflow.requeue_task, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._pause_task_type(task_type text, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    changed boolean;
BEGIN
    PERFORM workflow._check_name(_pause_task_type.task_type, 'task type', false);
    INSERT INTO workflow.task_types AS t (task_type, paused, paused_at, paused_by)
    VALUES (_pause_task_type.task_type, true, now(), p_caller::regrole)
    ON CONFLICT (task_type) DO UPDATE
       SET paused = true, paused_at = EXCLUDED.paused_at, paused_by = EXCLUDED.paused_by
     WHERE NOT t.paused
    RETURNING true INTO changed;
    RETURN coalesce(changed, false);
END
$$;
COMMENT ON FUNCTION workflow._pause_task_type(text, oid) IS
    'internal: implementation of workflow.pause_task_type, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._resume_task_type(task_type text, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    changed boolean;
BEGIN
    PERFORM workflow._check_name(_resume_task_type.task_type, 'task type', false);
    UPDATE workflow.task_types t SET paused = false, paused_at = NULL, paused_by = NULL
     WHERE t.task_type = _resume_task_type.task_type AND t.paused
    RETURNING true INTO changed;
    IF changed THEN
        PERFORM workflow._wake_at_commit(_resume_task_type.task_type, 1000000);
    END IF;
    RETURN coalesce(changed, false);
END
$$;
COMMENT ON FUNCTION workflow._resume_task_type(text, oid) IS
    'internal: implementation of workflow.resume_task_type, with the calling role (src/api.c)';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c)

CREATE OR REPLACE FUNCTION workflow.pause_task_type(task_type text)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.pause_task_type(text) IS
    'stop handing out tasks of an external task type (tasks already handed out go on); false if it was paused already';

CREATE OR REPLACE FUNCTION workflow.resume_task_type(task_type text)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.resume_task_type(text) IS
    'hand out tasks of a paused external task type again (long-polling workers are woken); false if it was not paused';

CREATE OR REPLACE FUNCTION workflow.poll_tasks(task_type text, worker_id text, count integer DEFAULT 1,
                                               wait interval DEFAULT '0', domain text DEFAULT NULL)
RETURNS SETOF workflow.task
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.poll_tasks(text, text, integer, interval, text) IS
    'claim up to count external tasks of a type (SKIP LOCKED); with wait, block until one is committed or the wait ends (long poll, woken at commit)';

CREATE OR REPLACE FUNCTION workflow.complete_task(job_id bigint, lease bigint, output jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.complete_task(bigint, bigint, jsonb) IS
    'report an external task done with its output; idempotent for the same lease and output, refused for a stale lease';

CREATE OR REPLACE FUNCTION workflow.complete_tasks(job_ids bigint[], leases bigint[], outputs jsonb[] DEFAULT NULL)
RETURNS TABLE (job_id bigint, recorded boolean)
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.complete_tasks(bigint[], bigint[], jsonb[]) IS
    'complete_task for a batch of tasks, in the order given, in one statement; any error fails the whole call';

CREATE OR REPLACE FUNCTION workflow.fail_task(job_id bigint, lease bigint, error text,
                                              retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.fail_task(bigint, bigint, text, boolean) IS
    'report an external task failed; retried per its attempts and backoff unless retryable is false';

CREATE OR REPLACE FUNCTION workflow.extend_task(job_id bigint, lease bigint, by interval DEFAULT NULL)
RETURNS timestamptz
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.extend_task(bigint, bigint, interval) IS
    'heartbeat of a long external task: extend its lease (by the given time, the task timeout, or workflow.task_lease)';

CREATE OR REPLACE FUNCTION workflow.requeue_task(job_id bigint, lease bigint, "after" interval)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.requeue_task(bigint, bigint, interval) IS
    'hand an external task back without counting an attempt; it is visible again after the delay';
