-- Runner protocol (node-workflow backend calls)
-------------------------------------------------------------------------------

-- Checks shared by the runner protocol functions.
CREATE OR REPLACE FUNCTION workflow._check_runner_id(runner_id text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF runner_id IS NULL THEN
        RAISE EXCEPTION 'runner id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF runner_id !~ '^[[:print:]]{1,200}$' THEN
        RAISE EXCEPTION 'invalid runner id "%"', left(runner_id, 250)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A runner id is 1 to 200 printable characters.';
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._check_runner_id(text) IS
    'internal: validate a runner identifier';

-- Register an external worker's runner id if it is new — it belongs to the
-- calling role from then on — else record its heartbeat, without ever
-- waiting: several connections (forks, threads) may share one runner id,
-- and a heartbeat another transaction is writing right now is as good.
-- The id must be the caller's (see workflow._check_external_worker); that
-- is decided from the row read for the heartbeat anyway, so a heartbeat
-- costs no extra lookup.  (Whether a runner is idle is not stored:
-- workflow.runner_status derives it from the jobs it holds.)
CREATE OR REPLACE FUNCTION workflow._external_heartbeat(p_id text, p_caller oid)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    known   workflow.runners;
BEGIN
    SELECT * INTO known FROM workflow.runners x WHERE x.id = p_id;
    IF NOT FOUND THEN
        -- a new id: the names of the in-server workers are refused
        PERFORM workflow._check_external_worker(p_id, p_caller);
        INSERT INTO workflow.runners (id, kind, pid, owner)
        VALUES (p_id, 'external', pg_backend_pid(), p_caller::regrole)
        ON CONFLICT (id) DO NOTHING;
        IF NOT FOUND THEN
            -- registered meanwhile, perhaps by another role
            PERFORM workflow._check_external_worker(p_id, p_caller);
        END IF;
        RETURN;
    END IF;
    IF known.kind <> 'external' OR known.owner IS DISTINCT FROM p_caller THEN
        -- refused, unless the caller is an administrator
        PERFORM workflow._check_external_worker(p_id, p_caller);
    END IF;
    -- already written by this transaction (a poll and its completions in
    -- one transaction): nothing new to record
    IF known.active_at = now() THEN
        RETURN;
    END IF;
    PERFORM FROM workflow.runners r WHERE r.id = p_id FOR NO KEY UPDATE SKIP LOCKED;
    IF FOUND THEN
        UPDATE workflow.runners r SET active_at = now() WHERE r.id = p_id;
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._external_heartbeat(text, oid) IS
    'internal: register (as the caller''s) or heartbeat an external worker''s runner id without waiting for a concurrent heartbeat';

-- Can a queued job run now as far as its target is concerned?  It can when
-- it has no target, when it already holds its target (between two of its
-- tasks), or when the target is free and no earlier runnable job of the
-- same target is queued.
CREATE OR REPLACE FUNCTION workflow._target_free(p_id bigint, p_owner regrole, p_target text,
                                                 p_priority integer, p_run_at timestamptz, p_now timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (SELECT p_target IS NULL
        OR EXISTS (SELECT 1 FROM workflow.target_locks l
                    WHERE l.owner = p_owner AND l.target = p_target AND l.job_id = p_id)
        OR (NOT EXISTS (SELECT 1 FROM workflow.target_locks l
                         WHERE l.owner = p_owner AND l.target = p_target)
            AND NOT EXISTS (SELECT 1 FROM workflow.jobs e
                             WHERE e.target = p_target AND e.created_by = p_owner
                               AND e.execution = 'queued'
                               AND e.run_at <= p_now AND e.id <> p_id
                               AND (e.priority > p_priority
                                    OR (e.priority = p_priority
                                        AND (e.run_at, e.id) < (p_run_at, p_id))))));
END
$$;
COMMENT ON FUNCTION workflow._target_free(bigint, regrole, text, integer, timestamptz, timestamptz) IS
    'internal: lock-by-target rule for a queued job';

-- Take the target of a job being claimed, or tell that it is taken: the
-- one acquisition of a target, shared by the three claims.  Atomic: a
-- concurrent claim of the same target waits on the row, then sees it
-- taken; a job that holds its target already (between two of its tasks)
-- keeps it.
CREATE OR REPLACE FUNCTION workflow._take_target(p_id bigint, p_owner regrole, p_target text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    got     bigint;
BEGIN
    INSERT INTO workflow.target_locks AS l (owner, target, job_id)
    VALUES (p_owner, p_target, p_id)
        ON CONFLICT (owner, target) DO UPDATE SET locked_at = l.locked_at
        WHERE l.job_id = EXCLUDED.job_id
    RETURNING l.job_id INTO got;
    RETURN got IS NOT NULL;
END
$$;
COMMENT ON FUNCTION workflow._take_target(bigint, regrole, text) IS
    'internal: lock by target: take a job''s target at its claim, or false when another job holds it';

CREATE OR REPLACE FUNCTION workflow.next_jobs(start integer, stop integer, queue text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF start IS NULL OR stop IS NULL THEN
        RAISE EXCEPTION 'start and stop must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF start < 0 OR stop < start THEN
        RAISE EXCEPTION 'invalid range of jobs: start % stop %', start, stop
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Rows are numbered from 0 and stop must not be less than start.';
    END IF;
    IF stop - start >= 10000 THEN
        RAISE EXCEPTION 'cannot list more than 10000 jobs at once'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- "queue" here is node-workflow's word for a task type
    IF next_jobs.queue IS NULL THEN
        RETURN QUERY
            SELECT j.id FROM workflow.jobs j
             WHERE j.execution = 'queued' AND j.task_type IS NULL AND j.run_at <= now()
               AND (j.target IS NULL OR workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at, now()))
             ORDER BY j.priority DESC, j.run_at, j.id
            OFFSET start LIMIT stop - start + 1;
    ELSE
        RETURN QUERY
            SELECT j.id FROM workflow.jobs j
             WHERE j.execution = 'queued' AND j.task_type = next_jobs.queue AND j.run_at <= now()
               AND (j.target IS NULL OR workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at, now()))
             ORDER BY j.priority DESC, j.run_at, j.id
            OFFSET start LIMIT stop - start + 1;
    END IF;
END
$$;
COMMENT ON FUNCTION workflow.next_jobs(integer, integer, text) IS
    'runnable queued jobs in claim order, rows start..stop (0-based, inclusive); queue NULL = jobs whose next task is an SQL task, otherwise an external task type';

-- Implementation of workflow.run_job, with the calling role (src/api.c):
-- the runner id must be the caller's.
CREATE OR REPLACE FUNCTION workflow._run_job(id bigint, runner_id text, p_caller oid)
RETURNS workflow.jobs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
BEGIN
    IF _run_job.id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._check_runner_id(_run_job.runner_id);
    PERFORM workflow._check_external_worker(_run_job.runner_id, p_caller);

    SELECT * INTO j FROM workflow.jobs jj
     WHERE jj.id = _run_job.id AND jj.execution = 'queued' AND jj.run_at <= now()
       FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM workflow.jobs jj WHERE jj.id = _run_job.id) THEN
            RAISE EXCEPTION 'job % does not exist', _run_job.id
                USING ERRCODE = 'undefined_object';
        END IF;
        RETURN NULL;        -- taken, not queued, or not due
    END IF;
    IF NOT workflow._queue_admit(j) THEN
        RETURN NULL;        -- its queue's limits hold it back
    END IF;

    IF j.target IS NOT NULL THEN
        IF NOT workflow._target_free(j.id, j.created_by, j.target, j.priority, j.run_at, now()) THEN
            RETURN NULL;
        END IF;
        IF NOT workflow._take_target(j.id, j.created_by, j.target) THEN
            RETURN NULL;
        END IF;
    END IF;

    PERFORM workflow._external_heartbeat(_run_job.runner_id, p_caller);

    -- the job's time runs from its first claim, as for the other claims;
    -- the claim lasts while the runner heartbeats (runner_active), until
    -- the job's deadline (the sweeper then times the job out)
    UPDATE workflow.jobs jj
       SET execution = 'running', runner_id = _run_job.runner_id,
           lease = workflow._new_lease(), claimed_at = now(),
           started_at = coalesce(jj.started_at, now()),
           deadline = coalesce(jj.deadline, now() + (SELECT w.timeout FROM workflow.workflows w
                                                      WHERE w.id = jj.workflow_id))
     WHERE jj.id = j.id
    RETURNING * INTO j;
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._run_job(bigint, text, oid) IS
    'internal: implementation of workflow.run_job, with the calling role (src/api.c)';

-- Implementation of workflow.finish_job, with the calling role (src/api.c):
-- the runner id must be the caller's, and the job must run under it.
CREATE OR REPLACE FUNCTION workflow._finish_job(id bigint, runner_id text, execution workflow.execution,
                                                result jsonb, p_caller oid)
RETURNS workflow.jobs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j   workflow.jobs;
BEGIN
    PERFORM workflow._check_runner_id(_finish_job.runner_id);
    IF _finish_job.execution IS NULL THEN
        RAISE EXCEPTION 'execution must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _finish_job.execution NOT IN ('succeeded', 'failed', 'canceled') THEN
        RAISE EXCEPTION 'cannot finish a job as "%"', _finish_job.execution
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A job finishes as succeeded, failed or canceled.';
    END IF;
    IF _finish_job.result IS NOT NULL THEN
        PERFORM workflow._check_payload(_finish_job.result, 'result');
    END IF;
    PERFORM workflow._check_external_worker(_finish_job.runner_id, p_caller);
    j := workflow._lock_job(_finish_job.id);
    -- a repeated call is answered, not refused
    IF j.execution = _finish_job.execution AND j.runner_id = _finish_job.runner_id
       AND (_finish_job.result IS NULL
            OR (CASE WHEN j.execution = 'succeeded' THEN j.result ELSE j.error END)
               IS NOT DISTINCT FROM _finish_job.result) THEN
        RETURN j;
    END IF;
    IF j.execution <> 'running' OR j.runner_id IS DISTINCT FROM _finish_job.runner_id THEN
        RAISE EXCEPTION 'cannot finish job % because it is not running for runner "%"',
                        j.id, _finish_job.runner_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The job is %s%s.', j.execution,
                                  CASE WHEN j.runner_id IS NOT NULL
                                       THEN format(' (runner "%s")', j.runner_id) ELSE '' END);
    END IF;
    -- a job in its oncancel chain ends canceled, one in its onerror chain
    -- cannot succeed: the chain's end decides, as for the runners
    IF j.phase = 'oncancel' THEN
        j := workflow._terminate(j, 'canceled', NULL,
                                 coalesce(j.error, jsonb_build_object('message', 'job canceled')));
    ELSIF j.phase = 'onerror' AND _finish_job.execution = 'succeeded' THEN
        j := workflow._terminate(j, 'failed', NULL, j.error);
    ELSE
        j := workflow._terminate(j, _finish_job.execution,
                                 CASE WHEN _finish_job.execution = 'succeeded' THEN _finish_job.result END,
                                 CASE WHEN _finish_job.execution <> 'succeeded' THEN
                                     coalesce(_finish_job.result,
                                              jsonb_build_object('message', 'finished by runner as ' || _finish_job.execution))
                                 END);
    END IF;
    PERFORM workflow._external_heartbeat(_finish_job.runner_id, p_caller);
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._finish_job(bigint, text, workflow.execution, jsonb, oid) IS
    'internal: implementation of workflow.finish_job, with the calling role (src/api.c)';

-- Implementation of workflow.pause_job, with the calling role (src/api.c):
-- the runner that claimed a job parks it as waiting (node-workflow's
-- pauseJob), a 'waiting' run recorded, until resume_job (or a cancel).
CREATE OR REPLACE FUNCTION workflow._pause_job(id bigint, runner_id text, p_caller oid)
RETURNS workflow.jobs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j   workflow.jobs;
BEGIN
    PERFORM workflow._check_runner_id(_pause_job.runner_id);
    PERFORM workflow._check_external_worker(_pause_job.runner_id, p_caller);
    j := workflow._lock_job(_pause_job.id);
    IF j.execution <> 'running' OR j.runner_id IS DISTINCT FROM _pause_job.runner_id THEN
        RAISE EXCEPTION 'cannot pause job % because it is not running for runner "%"',
                        j.id, _pause_job.runner_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The job is %s.', j.execution);
    END IF;
    j := workflow._runner_record(j.id, j.lease, 'wait', NULL, NULL, j.claimed_at, NULL, NULL);
    PERFORM workflow._external_heartbeat(_pause_job.runner_id, p_caller);
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._pause_job(bigint, text, oid) IS
    'internal: implementation of workflow.pause_job, with the calling role (src/api.c)';

-- Implementation of workflow.register_runner, with the calling role
-- (src/api.c).  An SQL caller registers an external worker under an id
-- that is new (it becomes the caller's) or already its own.  The in-server
-- workers (src/runner.c, src/sweeper.c) register their own ids through the
-- same function: which one calls is known from its process
-- (workflow._in_server_worker), never from its arguments; their rows
-- belong to the extension owner.
CREATE OR REPLACE FUNCTION workflow._register_runner(runner_id text, kind text, p_caller oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    me      text := workflow._in_server_worker();
    done    boolean;
BEGIN
    PERFORM workflow._check_runner_id(_register_runner.runner_id);
    IF _register_runner.kind IS NULL THEN
        RAISE EXCEPTION 'runner kind must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _register_runner.kind NOT IN ('runner', 'sweeper', 'external') THEN
        RAISE EXCEPTION 'invalid runner kind "%"', _register_runner.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are runner, sweeper and external.';
    END IF;
    IF me IS NOT NULL THEN
        -- an in-server worker registers itself (again after a restart)
        IF _register_runner.runner_id <> me
           OR _register_runner.kind <> (CASE WHEN me = 'sweeper' THEN 'sweeper' ELSE 'runner' END) THEN
            RAISE EXCEPTION 'in-server worker "%" cannot register as "%" of kind %',
                            me, _register_runner.runner_id, _register_runner.kind
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        INSERT INTO workflow.runners AS r (id, kind, pid, started_at, active_at, owner)
        VALUES (_register_runner.runner_id, _register_runner.kind, pg_backend_pid(), now(), now(),
                (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'workflow')::regrole)
        ON CONFLICT (id) DO UPDATE
           SET kind = EXCLUDED.kind, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
               active_at = EXCLUDED.active_at, owner = EXCLUDED.owner;
        RETURN;
    END IF;
    IF _register_runner.kind <> 'external' THEN
        RAISE EXCEPTION 'only the in-server workers can register as kind %', _register_runner.kind
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An external worker registers with kind external, the default.';
    END IF;
    PERFORM workflow._check_external_worker(_register_runner.runner_id, p_caller);
    INSERT INTO workflow.runners AS r (id, kind, pid, started_at, active_at, owner)
    VALUES (_register_runner.runner_id, 'external', pg_backend_pid(), now(), now(),
            p_caller::regrole)
    ON CONFLICT (id) DO UPDATE
       SET pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
           active_at = EXCLUDED.active_at
     WHERE r.kind = 'external'
       AND (r.owner = EXCLUDED.owner OR pg_has_role(p_caller, 'workflow_admin', 'MEMBER'))
    RETURNING true INTO done;
    IF done IS NULL THEN
        -- registered meanwhile by another role: the check refuses it now
        PERFORM workflow._check_external_worker(_register_runner.runner_id, p_caller);
        RAISE EXCEPTION 'runner "%" could not be registered', _register_runner.runner_id;
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._register_runner(text, text, oid) IS
    'internal: implementation of workflow.register_runner, with the calling role (src/api.c)';

-- Implementation of workflow.runner_active, with the calling role
-- (src/api.c): the runner id must be the caller's.
CREATE OR REPLACE FUNCTION workflow._runner_active(runner_id text, p_caller oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM workflow._check_runner_id(_runner_active.runner_id);
    PERFORM workflow._check_external_worker(_runner_active.runner_id, p_caller);
    IF NOT EXISTS (SELECT 1 FROM workflow.runners r WHERE r.id = _runner_active.runner_id) THEN
        RAISE EXCEPTION 'runner "%" is not registered', _runner_active.runner_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Call workflow.register_runner() first.';
    END IF;
    PERFORM workflow._external_heartbeat(_runner_active.runner_id, p_caller);
END
$$;
COMMENT ON FUNCTION workflow._runner_active(text, oid) IS
    'internal: implementation of workflow.runner_active, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow.inactive_runners()
RETURNS SETOF workflow.runners
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT r.* FROM workflow.runners r
     WHERE r.active_at < now() - current_setting('workflow.stale_after')::interval
       AND (r.kind = 'external'
            OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                            WHERE a.pid = r.pid AND a.backend_start <= r.started_at))
     ORDER BY r.active_at;
END
$$;
COMMENT ON FUNCTION workflow.inactive_runners() IS
    'runners silent for longer than workflow.stale_after whose process is gone (external runners: silent only)';

CREATE OR REPLACE FUNCTION workflow.stale_jobs()
RETURNS SETOF workflow.jobs
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT j.* FROM workflow.jobs j
     WHERE j.execution = 'running'
       AND (j.lease_expires_at < now()
            OR (j.lease_expires_at IS NULL
                AND (j.runner_id IN (SELECT r.id FROM workflow.inactive_runners() r)
                     -- claimed by an earlier incarnation of a runner that
                     -- registered again since (restart, crash recovery)
                     OR EXISTS (SELECT 1 FROM workflow.runners r
                                 WHERE r.id = j.runner_id AND r.started_at > j.claimed_at)
                     OR (NOT EXISTS (SELECT 1 FROM workflow.runners r WHERE r.id = j.runner_id)
                         AND coalesce(j.claimed_at, j.started_at)
                             < now() - current_setting('workflow.stale_after')::interval))))
     ORDER BY j.id;
END
$$;
COMMENT ON FUNCTION workflow.stale_jobs() IS
    'running jobs whose lease has expired (external tasks), or whose runner is inactive or unknown (other claims): what the sweeper acts on';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c)

-- The runner and external task protocols: runner ids belong to the role
-- that registered them, and a task is reported only by the role that
-- claimed it, so these too must know their caller exactly.

CREATE OR REPLACE FUNCTION workflow.run_job(id bigint, runner_id text)
RETURNS workflow.jobs
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.run_job(bigint, text) IS
    'claim a queued job for a runner (FOR NO KEY UPDATE SKIP LOCKED); NULL when another runner has it, it is not due, or its target is held';

CREATE OR REPLACE FUNCTION workflow.finish_job(id bigint, runner_id text, execution workflow.execution,
                                               result jsonb DEFAULT NULL)
RETURNS workflow.jobs
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.finish_job(bigint, text, workflow.execution, jsonb) IS
    'guarded terminal transition of a running job by the runner that claims it; a repeated identical call returns the job unchanged';

CREATE OR REPLACE FUNCTION workflow.pause_job(id bigint, runner_id text)
RETURNS workflow.jobs
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.pause_job(bigint, text) IS
    'park a job the runner claimed as waiting (a waiting run), until resume_job';

CREATE OR REPLACE FUNCTION workflow.register_runner(runner_id text, kind text DEFAULT 'external')
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.register_runner(text, text) IS
    'register a runner id as the calling role''s (or register it again after a restart) and record its first heartbeat';

CREATE OR REPLACE FUNCTION workflow.runner_active(runner_id text)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.runner_active(text) IS
    'heartbeat of a runner (node-workflow runnerActive)';
