-------------------------------------------------------------------------------
-- Control flow: parallel branches, switches, sub-workflows, foreach and
-- signals (README, "Control flow"; src/README.md, "Children and joins")
--
-- A control-flow entry runs as child jobs.  The runner that reaches the
-- entry evaluates its SQL (the switch, the foreach list, the params of a
-- sub-workflow) as the job's creator, like a task body, and reports the
-- value with the outcome wait_step; _spawn then starts the children and
-- parks the parent, waiting under a new lease, with a row in
-- workflow.joins that counts the children not ended.  A child's end is
-- seen by the deferred trigger jobs_child_ended at the commit of the
-- transaction that ended it (whatever ended it: a runner, a worker's
-- report, a cancel, the sweeper), which locks the parent and counts; the
-- last child continues the parent, once.  Every way a parent leaves the
-- entry otherwise (a failing child with fail_fast, its timeout, the job's
-- timeout, a cancel) goes through _abandon_children, which cancels the
-- children still in progress.
-------------------------------------------------------------------------------

-- The workflow that runs a chain of a control-flow entry of job j's
-- workflow ("<entry>/<branch>", "<entry>/<n>", "<entry>/default",
-- "<entry>/do"): a part of the same version.
CREATE OR REPLACE FUNCTION workflow._part(j workflow.jobs, sub text)
RETURNS workflow.workflows
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w       workflow.workflows;
BEGIN
    SELECT p.* INTO w
      FROM workflow.workflows me
      JOIN workflow.workflows main ON main.id = coalesce(me.part_of, me.id)
      JOIN workflow.workflows p ON p.part_of = main.id AND p.name = main.name || '/' || sub
                               AND p.version = main.version
     WHERE me.id = j.workflow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'chain "%" of the workflow of job % does not exist', sub, j.id
            USING ERRCODE = 'internal_error';
    END IF;
    RETURN w;
END
$$;
COMMENT ON FUNCTION workflow._part(workflow.jobs, text) IS
    'internal: the workflow that runs one chain of a control-flow entry';

-- Start the children of entry cur of job j under lease p_lease: one job
-- per element of the arrays (its workflow, params, branch, item), in
-- order.  Children from held_from on wait for their turn (foreach
-- concurrency).  Children are the creator's, with the parent's priority
-- and domain; the target stays with the root.
CREATE OR REPLACE FUNCTION workflow._start_children(j workflow.jobs, cur workflow.tasks, p_lease bigint,
                                                   p_workflows bigint[], p_params jsonb[],
                                                   p_branches text[], p_items jsonb[],
                                                   held_from integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    woken   integer := 0;
    t       record;
BEGIN
    INSERT INTO workflow.jobs
        (id, workflow_id, workflow, version, execution, params, priority, run_at, task_type,
         domain, created_by, parent_id, root_id, parent_task, parent_lease, branch, child_index,
         item, waiting_for, queue, concurrency_key)
    SELECT nextval('workflow.jobs_id_seq'), w.id, w.name, w.version,
           CASE WHEN c.n - 1 < held_from THEN 'queued' ELSE 'waiting' END::workflow.execution,
           c.params, j.priority,
           CASE WHEN c.n - 1 < held_from THEN now() ELSE 'infinity' END,
           CASE WHEN c.n - 1 < held_from THEN f.task_type END,
           j.domain, j.created_by, j.id, j.root_id, cur.name, p_lease, c.branch, (c.n - 1)::integer,
           c.item, CASE WHEN c.n - 1 < held_from THEN NULL ELSE 'turn' END,
           -- the parent's queue and key; a sub-workflow's own queue if it has one
           CASE WHEN w.part_of IS NULL AND w.queue <> 'default' THEN w.queue ELSE j.queue END,
           j.concurrency_key
      FROM unnest(p_workflows, p_params, p_branches, p_items) WITH ORDINALITY AS c(wid, params, branch, item, n)
      JOIN workflow.workflows w ON w.id = c.wid
      LEFT JOIN workflow.tasks f ON f.workflow_id = w.id AND f.phase = 'chain' AND f.position = 0
     ORDER BY c.n;
    -- wake the executors of the children that may start now
    FOR t IN SELECT f.task_type, count(*)::integer AS n
               FROM unnest(p_workflows) WITH ORDINALITY AS c(wid, n)
               LEFT JOIN workflow.tasks f ON f.workflow_id = c.wid AND f.phase = 'chain' AND f.position = 0
              WHERE c.n - 1 < held_from
              GROUP BY f.task_type
    LOOP
        woken := woken + workflow._wake_at_commit(t.task_type, t.n);
    END LOOP;
    RETURN woken;
END
$$;
COMMENT ON FUNCTION workflow._start_children(workflow.jobs, workflow.tasks, bigint, bigint[], jsonb[], text[], jsonb[], integer) IS
    'internal: insert the child jobs of a control-flow entry';

-- A running job reached control-flow entry cur, whose SQL gave value (the
-- switch's value, the foreach list, the sub-workflow's params; NULL for a
-- parallel entry): start its children and wait for them.  A value that
-- cannot be used fails the entry's attempt (retried per its attempts).
CREATE OR REPLACE FUNCTION workflow._spawn(j workflow.jobs, cur workflow.tasks, value jsonb, started timestamptz)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    new_lease   bigint := workflow._new_lease();
    v_depth     integer;
    wids        bigint[];
    v_params    jsonb[];
    v_branches  text[];
    v_items     jsonb[];
    held_from   integer := 2147483647;
    v_total     integer;
    chosen      text;
    n           integer;
    child       workflow.workflows;
BEGIN
    -- a tree is at most 32 jobs deep (a workflow may start itself)
    WITH RECURSIVE up(id, parent_id, d) AS (
        SELECT j.id, j.parent_id, 1
        UNION ALL
        SELECT p.id, p.parent_id, up.d + 1 FROM up JOIN workflow.jobs p ON p.id = up.parent_id
         WHERE up.d <= 32)
    SELECT max(d) INTO v_depth FROM up;
    IF v_depth >= 32 THEN
        RETURN workflow._task_failed(j, jsonb_build_object('message',
                   format('entry "%s" cannot start children: the job is %s levels deep in its tree, and 32 is the limit', cur.name, v_depth)),
                   started, false);
    END IF;

    CASE cur.kind
    WHEN 'parallel' THEN
        SELECT array_agg((workflow._part(j, cur.name || '/' || b.name)).id ORDER BY b.n),
               array_agg(b.name ORDER BY b.n)
          INTO wids, v_branches
          FROM jsonb_array_elements_text(cur.spawn -> 'branches') WITH ORDINALITY AS b(name, n);
        v_params := array_fill(j.params, ARRAY[cardinality(wids)]);
        v_items := array_fill(NULL::jsonb, ARRAY[cardinality(wids)]);
    WHEN 'switch' THEN
        chosen := value #>> '{}';
        SELECT (c.n - 1)::text INTO n
          FROM jsonb_array_elements_text(cur.spawn -> 'cases') WITH ORDINALITY AS c(v, n)
         WHERE c.v = chosen;
        IF n IS NULL AND NOT (cur.spawn ->> 'default')::boolean THEN
            RETURN workflow._task_failed(j, jsonb_build_object('message',
                       format('no case of switch "%s" matches %s, and it has no default', cur.name,
                              coalesce(to_jsonb(chosen)::text, 'NULL'))), started);
        END IF;
        wids := ARRAY[(workflow._part(j, cur.name || '/' || coalesce(n::text, 'default'))).id];
        v_params := ARRAY[j.params];
        v_branches := ARRAY[CASE WHEN n IS NULL THEN NULL ELSE chosen END];
        v_items := ARRAY[NULL::jsonb];
    WHEN 'workflow' THEN
        IF value IS NOT NULL AND jsonb_typeof(value) <> 'object' THEN
            RETURN workflow._task_failed(j, jsonb_build_object('message',
                       format('the params of sub-workflow entry "%s" must be a JSON object, not a JSON %s',
                              cur.name, jsonb_typeof(value))), started);
        END IF;
        child := workflow._child_workflow(cur);
        IF child.id IS NULL THEN
            RETURN workflow._task_failed(j, jsonb_build_object('message',
                       format('workflow "%s" of entry "%s" does not exist', cur.spawn ->> 'workflow', cur.name)),
                       started);
        END IF;
        wids := ARRAY[child.id];
        v_params := ARRAY[coalesce(value, CASE WHEN cur.sql IS NULL THEN j.params END, '{}')];
        v_branches := ARRAY[NULL::text];
        v_items := ARRAY[NULL::jsonb];
    WHEN 'foreach' THEN
        -- the rows of the query, or the one array it returned
        IF jsonb_typeof(value) = 'array' AND jsonb_array_length(value) = 1
           AND jsonb_typeof(value -> 0) = 'array' THEN
            value := value -> 0;
        END IF;
        value := coalesce(value, '[]');
        IF jsonb_array_length(value) > 100000 THEN
            RETURN workflow._task_failed(j, jsonb_build_object('message',
                       format('foreach entry "%s" has %s items, more than the limit of 100000',
                              cur.name, jsonb_array_length(value))), started);
        END IF;
        v_items := ARRAY(SELECT i FROM jsonb_array_elements(value) i);
        IF cardinality(v_items) = 0 THEN
            RETURN workflow._task_succeeded(j, '[]', started, true);
        END IF;
        IF cur.spawn ? 'chain' THEN
            wids := array_fill((workflow._part(j, cur.name || '/do')).id, ARRAY[cardinality(v_items)]);
            v_params := array_fill(j.params, ARRAY[cardinality(v_items)]);
        ELSE
            child := workflow._child_workflow(cur);
            IF child.id IS NULL THEN
                RETURN workflow._task_failed(j, jsonb_build_object('message',
                           format('workflow "%s" of entry "%s" does not exist', cur.spawn ->> 'workflow', cur.name)),
                           started);
            END IF;
            wids := array_fill(child.id, ARRAY[cardinality(v_items)]);
            -- an item that is an object is the child's params
            v_params := ARRAY(SELECT CASE WHEN jsonb_typeof(i) = 'object' THEN i ELSE '{}' END
                              FROM unnest(v_items) i);
        END IF;
        v_branches := array_fill(NULL::text, ARRAY[cardinality(v_items)]);
        held_from := coalesce((cur.spawn ->> 'concurrency')::integer, 2147483647);
    ELSE
        RAISE EXCEPTION 'entry "%" of kind % starts no children', cur.name, cur.kind
            USING ERRCODE = 'internal_error';
    END CASE;

    v_total := cardinality(wids);
    PERFORM workflow._start_children(j, cur, new_lease, wids, v_params, v_branches, v_items, held_from);
    INSERT INTO workflow.joins (job_id, lease, task, total, pending, next_child, fail_fast, started_at)
    VALUES (j.id, new_lease, cur.name, v_total, v_total, LEAST(v_total, held_from),
            coalesce((cur.spawn ->> 'fail_fast')::boolean, true), coalesce(started, clock_timestamp()));
    UPDATE workflow.jobs
       SET execution = 'waiting', waiting_for = 'children', lease = new_lease, runner_id = NULL,
           lease_expires_at = NULL,
           run_at = CASE WHEN cur.timeout IS NULL THEN 'infinity' ELSE clock_timestamp() + cur.timeout END
     WHERE id = j.id
    RETURNING * INTO j;
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._spawn(workflow.jobs, workflow.tasks, jsonb, timestamptz) IS
    'internal: a job reached a control-flow entry: start its children and wait for them';

-- The workflow version a sub-workflow entry (or a foreach body) starts:
-- the version it names, else the latest (NULL: none).
CREATE OR REPLACE FUNCTION workflow._child_workflow(cur workflow.tasks)
RETURNS workflow.workflows
LANGUAGE sql STABLE
AS $$
    SELECT w.* FROM workflow.workflows w
     WHERE w.name = cur.spawn ->> 'workflow' AND w.part_of IS NULL
       AND (cur.spawn ->> 'version' IS NULL OR w.version = (cur.spawn ->> 'version')::integer)
     ORDER BY w.version DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION workflow._child_workflow(workflow.tasks) IS
    'internal: the workflow version a sub-workflow entry starts';

-- The output of a control-flow entry whose children all succeeded: a
-- parallel entry's object of branch outputs, a foreach's array of outputs
-- in item order, the one child's result for a switch or a sub-workflow.
CREATE OR REPLACE FUNCTION workflow._join_output(j workflow.jobs, jn workflow.joins)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    kind    text;
BEGIN
    SELECT s.kind INTO kind FROM workflow.tasks s
     WHERE s.workflow_id = j.workflow_id AND s.phase = j.phase AND s.position = j.step;
    IF kind = 'parallel' THEN
        RETURN (SELECT jsonb_object_agg(c.branch, c.result ORDER BY c.child_index)
                  FROM workflow.jobs c
                 WHERE c.parent_id = j.id AND c.parent_task = jn.task AND c.parent_lease = jn.lease);
    ELSIF kind = 'foreach' THEN
        RETURN (SELECT jsonb_agg(c.result ORDER BY c.child_index)
                  FROM workflow.jobs c
                 WHERE c.parent_id = j.id AND c.parent_task = jn.task AND c.parent_lease = jn.lease);
    END IF;
    RETURN (SELECT c.result FROM workflow.jobs c
             WHERE c.parent_id = j.id AND c.parent_task = jn.task AND c.parent_lease = jn.lease
             LIMIT 1);
END
$$;
COMMENT ON FUNCTION workflow._join_output(workflow.jobs, workflow.joins) IS
    'internal: the output of a control-flow entry from its children''s results';

-- A child job ended (the deferred trigger jobs_child_ended, at the commit
-- of the transaction that ended it).  The join's row orders the ends of
-- the children of one wait: each counts itself there, and the one that
-- counts the last (or a failure that ends the wait) locks the parent and
-- continues it, once.  A child of an older wait (the parent left the
-- entry meanwhile: its join row is gone, or has another lease) changes
-- nothing.  The common end, a success that is not the last, costs one
-- statement: the parent's row is not touched.  In a foreach with a
-- concurrency, every end but a failure that ends the wait moves
-- next_child on, in the same statement, and the held child it passes
-- (if next_child has not passed the last one) is queued, in one more.
CREATE OR REPLACE FUNCTION workflow._child_ended()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = 0
AS $$
DECLARE
    p       workflow.jobs;
    c       workflow.jobs;
    jn      workflow.joins;
    err     jsonb;
    lost    boolean := NEW.execution <> 'succeeded';
    stops   boolean;                -- the end fails the wait (fail_fast)
BEGIN
    UPDATE workflow.joins
       SET pending = pending - 1, failed = failed + lost::integer,
           next_child = next_child + (NOT (lost AND fail_fast))::integer
     WHERE job_id = NEW.parent_id AND lease = NEW.parent_lease
    RETURNING * INTO jn;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    stops := lost AND jn.fail_fast;

    -- foreach: the next held child takes the place of the one that ended
    IF NOT stops AND jn.next_child <= jn.total THEN
        UPDATE workflow.jobs k
           SET execution = 'queued', waiting_for = NULL, run_at = now(),
               task_type = (SELECT f.task_type FROM workflow.tasks f
                             WHERE f.workflow_id = k.workflow_id AND f.phase = 'chain' AND f.position = 0)
         WHERE k.parent_id = NEW.parent_id AND k.parent_task = jn.task
           AND k.child_index = jn.next_child - 1 AND k.parent_lease = jn.lease
           -- not the predicate of jobs_waiting: a plan made while that index
           -- was empty would scan every waiting job instead of jobs_children
           AND (k.execution = 'waiting') IS TRUE AND (k.waiting_for = 'turn') IS TRUE
        RETURNING * INTO c;
        IF FOUND THEN
            PERFORM workflow._wake_at_commit(c.task_type);
        END IF;
    END IF;

    IF NOT (stops OR jn.pending = 0) THEN
        RETURN NULL;
    END IF;

    -- the wait ends: the parent moves on
    SELECT * INTO p FROM workflow.jobs WHERE id = NEW.parent_id FOR NO KEY UPDATE;
    IF NOT FOUND OR p.execution <> 'waiting' OR p.lease IS DISTINCT FROM jn.lease THEN
        RETURN NULL;
    END IF;
    IF stops THEN
        err := jsonb_build_object(
            'message', format('child job %s of entry "%s"%s %s', NEW.id, jn.task,
                              CASE WHEN NEW.branch IS NOT NULL THEN format(' (branch "%s")', NEW.branch)
                                   WHEN NEW.item IS NOT NULL THEN format(' (item %s)', NEW.child_index)
                                   ELSE '' END,
                              NEW.execution),
            'child', NEW.id, 'child_error', NEW.error);
        -- the other children are canceled by _task_failed
        PERFORM workflow._task_failed(p, err, jn.started_at);
        RETURN NULL;
    END IF;
    DELETE FROM workflow.joins WHERE job_id = p.id;
    IF jn.failed > 0 THEN
        PERFORM workflow._task_failed(p, jsonb_build_object(
            'message', format('%s of the %s children of entry "%s" did not succeed', jn.failed, jn.total, jn.task),
            'children', (SELECT jsonb_agg(k.id ORDER BY k.child_index) FROM workflow.jobs k
                          WHERE k.parent_id = p.id AND k.parent_task = jn.task
                            AND k.parent_lease = jn.lease AND k.execution <> 'succeeded')),
            jn.started_at);
    ELSE
        PERFORM workflow._task_succeeded(p, workflow._join_output(p, jn), jn.started_at);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION workflow._child_ended() IS
    'internal: trigger: a child job ended; count it, and continue its parent after the last one';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'workflow.jobs'::regclass AND tgname = 'jobs_child_ended') THEN
        CREATE CONSTRAINT TRIGGER jobs_child_ended
            AFTER UPDATE OF execution ON workflow.jobs
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW
            WHEN (NEW.parent_id IS NOT NULL
                  AND NEW.execution OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed', 'canceled']::workflow.execution[]))
            EXECUTE FUNCTION workflow._child_ended();
    END IF;
END
$$;

-- A job leaves a control-flow entry otherwise than by its children's
-- success (a failed child with fail_fast, its timeout, the job's timeout,
-- a cancel): the children still in progress are canceled (their oncancel
-- chains run) and their ends no longer count.
CREATE OR REPLACE FUNCTION workflow._abandon_children(j workflow.jobs, err jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    jn      workflow.joins;
    c       workflow.jobs;
BEGIN
    IF j.execution <> 'waiting' OR j.waiting_for IS DISTINCT FROM 'children' THEN
        RETURN;
    END IF;
    DELETE FROM workflow.joins WHERE job_id = j.id RETURNING * INTO jn;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    err := jsonb_build_object('message', format('canceled with its parent job %s', j.id),
                              'parent_error', err);
    -- children that never started end at once
    UPDATE workflow.jobs
       SET execution = 'canceled', waiting_for = NULL, error = err, finished_at = clock_timestamp()
     WHERE parent_id = j.id AND parent_task = jn.task AND parent_lease = jn.lease
       AND execution = 'waiting' AND waiting_for = 'turn';
    FOR c IN SELECT * FROM workflow.jobs
              WHERE parent_id = j.id AND parent_task = jn.task AND parent_lease = jn.lease
                AND execution IN ('queued', 'running', 'waiting') AND phase <> 'oncancel'
              ORDER BY child_index
                FOR NO KEY UPDATE
    LOOP
        PERFORM workflow._cancel_in_progress(c, err);
    END LOOP;
END
$$;
COMMENT ON FUNCTION workflow._abandon_children(workflow.jobs, jsonb) IS
    'internal: cancel the children of a job that leaves its control-flow entry';

-------------------------------------------------------------------------------
-- Signals
-------------------------------------------------------------------------------

-- How long a signal that resumed no job is kept (workflow.signal_retention).
CREATE OR REPLACE FUNCTION workflow._signal_retention()
RETURNS interval
LANGUAGE sql STABLE
RETURN coalesce(pg_catalog.current_setting('workflow.signal_retention', true), '1h')::interval;
COMMENT ON FUNCTION workflow._signal_retention() IS
    'internal: workflow.signal_retention as an interval';

-- The advisory lock that orders the waits and signals of one key.
CREATE OR REPLACE FUNCTION workflow._lock_signal_key(key text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('workflow.signal'), pg_catalog.hashtext(key))
$$;
COMMENT ON FUNCTION workflow._lock_signal_key(text) IS
    'internal: serialise the waits and signals of one key';

-- A running job reached a wait task for a signal of key: a kept signal
-- of its creator ends the wait at once (and is used up); else the job
-- waits, until the task's timeout if it has one.
CREATE OR REPLACE FUNCTION workflow._wait_signal(j workflow.jobs, cur workflow.tasks, key text, started timestamptz)
RETURNS workflow.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    s   workflow.signals;
BEGIN
    IF key IS NULL OR key = '' OR length(key) > 1000 THEN
        RETURN workflow._task_failed(j, jsonb_build_object('message',
                   format('the key of wait task "%s" must be a text of 1 to 1000 characters, not %s',
                          cur.name, coalesce(quote_literal(left(key, 100)), 'NULL'))), started);
    END IF;
    PERFORM workflow._lock_signal_key(key);
    DELETE FROM workflow.signals g
     WHERE g.owner = j.created_by AND g.key = _wait_signal.key
       AND g.sent_at > now() - workflow._signal_retention()
    RETURNING * INTO s;
    IF FOUND THEN
        RETURN workflow._task_succeeded(j, s.payload, started, true);
    END IF;
    UPDATE workflow.jobs
       SET execution = 'waiting', waiting_for = 'signal', signal_key = key, lease = NULL,
           runner_id = NULL, lease_expires_at = NULL,
           run_at = CASE WHEN cur.timeout IS NULL THEN 'infinity' ELSE clock_timestamp() + cur.timeout END
     WHERE id = j.id
    RETURNING * INTO j;
    RETURN j;
END
$$;
COMMENT ON FUNCTION workflow._wait_signal(workflow.jobs, workflow.tasks, text, timestamptz) IS
    'internal: a job reached a wait for a signal: take a kept one, or wait';

CREATE OR REPLACE FUNCTION workflow._signal(key text, payload jsonb, p_caller oid)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    n       integer := 0;
BEGIN
    IF _signal.key IS NULL THEN
        RAISE EXCEPTION 'signal key must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _signal.key = '' OR length(_signal.key) > 1000 THEN
        RAISE EXCEPTION 'signal key must be 1 to 1000 characters long'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _signal.payload IS NOT NULL THEN
        PERFORM workflow._check_payload(_signal.payload, 'signal payload');
    END IF;
    PERFORM workflow._lock_signal_key(_signal.key);
    FOR j IN SELECT * FROM workflow.jobs jj
              WHERE jj.signal_key = _signal.key AND jj.execution = 'waiting'
                AND jj.waiting_for = 'signal' AND workflow._may_see(jj.created_by, p_caller)
              ORDER BY jj.id
                FOR NO KEY UPDATE
    LOOP
        PERFORM workflow._task_succeeded(j, _signal.payload, NULL);
        n := n + 1;
    END LOOP;
    IF n = 0 AND workflow._signal_retention() > interval '0' THEN
        INSERT INTO workflow.signals AS g (owner, key, payload, sent_at)
        VALUES (p_caller::regrole, _signal.key, _signal.payload, now())
        ON CONFLICT (owner, key) DO UPDATE SET payload = EXCLUDED.payload, sent_at = EXCLUDED.sent_at;
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION workflow._signal(text, jsonb, oid) IS
    'internal: implementation of workflow.signal, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow.signal(key text, payload jsonb DEFAULT NULL)
RETURNS integer
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.signal(text, jsonb) IS
    'resume every job of the caller (every job, for workflow_admin) waiting for a signal of this key, with the payload as the wait''s output; at commit.  Kept for workflow.signal_retention when no job waits';
