-------------------------------------------------------------------------------
-- Definition helpers
-------------------------------------------------------------------------------

-- Raise the standard "invalid workflow definition" error for one field.
CREATE OR REPLACE FUNCTION workflow._invalid(field text, detail text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'invalid workflow definition: field "%" %', field, detail
        USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION workflow._invalid(text, text) IS
    'internal: raise the error for an invalid field of a workflow definition';

-- An interval given as interval text ('30 s') or a number of seconds.
CREATE OR REPLACE FUNCTION workflow._interval(value jsonb, field text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result interval;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(value) = 'number' THEN
        IF abs(value::numeric) > 3155760000 THEN
            PERFORM workflow._invalid(field, format('is out of range: %s seconds (at most 100 years)', value));
        END IF;
        -- rounded to microseconds first: a tiny number is 0, not an error
        result := make_interval(secs => round(value::numeric, 6)::double precision);
    ELSIF jsonb_typeof(value) = 'string' THEN
        BEGIN
            result := (value #>> '{}')::interval;
        EXCEPTION
            WHEN datetime_field_overflow OR interval_field_overflow THEN
                PERFORM workflow._invalid(field, format('is out of range: %s', value));
            WHEN invalid_datetime_format OR invalid_parameter_value THEN
                PERFORM workflow._invalid(field,
                    format('must be an interval such as "30 s" or a number of seconds, not %s', value));
        END;
    ELSE
        PERFORM workflow._invalid(field,
            format('must be an interval such as "30 s" or a number of seconds, not %s', value));
    END IF;
    IF result < interval '0' THEN
        PERFORM workflow._invalid(field, 'must not be negative');
    END IF;
    -- every interval is bounded, so that adding one to now() can never
    -- overflow: a claim that computes a deadline must not fail
    IF result > interval '100 years' THEN
        PERFORM workflow._invalid(field, format('is out of range: %s (at most 100 years)', value));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION workflow._interval(jsonb, text) IS
    'internal: read an interval field of a definition (interval text or seconds, 0 to 100 years)';

-- A whole number within bounds.
CREATE OR REPLACE FUNCTION workflow._integer(value jsonb, field text, lo integer, hi integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'number' OR value::numeric <> trunc(value::numeric) THEN
        PERFORM workflow._invalid(field, format('must be a whole number, not %s', value));
    END IF;
    IF value::numeric < lo OR value::numeric > hi THEN
        PERFORM workflow._invalid(field, format('must be between %s and %s, not %s', lo, hi, value));
    END IF;
    RETURN value::integer;
END
$$;
COMMENT ON FUNCTION workflow._integer(jsonb, text, integer, integer) IS
    'internal: read a bounded whole-number field of a definition';

-- A string field matching a pattern (NULL when absent).
CREATE OR REPLACE FUNCTION workflow._string(value jsonb, field text, pattern text, pattern_text text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'string' THEN
        PERFORM workflow._invalid(field, format('must be a string, not %s', value));
    END IF;
    IF pattern IS NOT NULL AND (value #>> '{}') !~ pattern THEN
        PERFORM workflow._invalid(field, format('must be %s, not %s', pattern_text, value));
    END IF;
    RETURN value #>> '{}';
END
$$;
COMMENT ON FUNCTION workflow._string(jsonb, text, text, text) IS
    'internal: read a string field of a definition, checked against a pattern';

-- Name rules shared by workflow names, task names and task types.
CREATE OR REPLACE FUNCTION workflow._name_pattern()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '^[A-Za-z0-9_.-]{1,128}$';
COMMENT ON FUNCTION workflow._name_pattern() IS
    'internal: the pattern of workflow names, task names and task types';

-- Validate one task of a chain, at position pos of phase (f: its path in
-- the definition, for the messages), and return it compiled, as a jsonb
-- row of workflow.tasks.
CREATE OR REPLACE FUNCTION workflow._compile_task(task jsonb, phase workflow.phase, pos integer, f text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key         text;
    kind        text;
    wait_for    interval;
    body        text;
    attempts    integer;
    backoff     text;
    fallback    text;
BEGIN
    IF jsonb_typeof(task) <> 'object' THEN
        PERFORM workflow._invalid(f, format('must be a task object, not %s', task));
    END IF;
    FOR key IN SELECT jsonb_object_keys(task) LOOP
        IF key NOT IN ('name', 'sql', 'task_type', 'wait', 'attempts', 'backoff',
                       'delay', 'max_delay', 'timeout', 'fallback', 'description') THEN
            PERFORM workflow._invalid(f || '.' || key, 'is not a known task field');
        END IF;
    END LOOP;
    IF NOT task ? 'name' OR jsonb_typeof(task -> 'name') = 'null' THEN
        PERFORM workflow._invalid(f || '.name', 'is required');
    END IF;
    PERFORM workflow._string(task -> 'name', f || '.name', workflow._name_pattern(),
                             '1 to 128 letters, digits, "_", "-" or "."');
    PERFORM workflow._string(task -> 'description', f || '.description', NULL, NULL);

    IF (task ? 'sql')::integer + (task ? 'task_type')::integer + (task ? 'wait')::integer <> 1 THEN
        PERFORM workflow._invalid(f, 'must have exactly one of "sql", "task_type" or "wait"');
    END IF;

    IF task ? 'sql' THEN
        kind := 'sql';
        body := workflow._string(task -> 'sql', f || '.sql', '\S', 'a non-empty SQL command');
        IF body IS NULL THEN
            PERFORM workflow._invalid(f || '.sql', 'must be a non-empty SQL command');
        END IF;
        PERFORM workflow._check_sql(body, f || '.sql');
    ELSIF task ? 'task_type' THEN
        kind := 'external';
        IF workflow._string(task -> 'task_type', f || '.task_type', workflow._name_pattern(),
                            '1 to 128 letters, digits, "_", "-" or "."') IS NULL THEN
            PERFORM workflow._invalid(f || '.task_type', 'must be a task type name');
        END IF;
    ELSE
        kind := 'wait';
        wait_for := workflow._compile_wait(task -> 'wait', f || '.wait');
        IF task ? 'fallback' THEN
            PERFORM workflow._invalid(f || '.fallback', 'is not allowed on a wait task');
        END IF;
    END IF;

    attempts := coalesce(workflow._integer(task -> 'attempts', f || '.attempts', 1, 1000), 1);
    backoff := coalesce(workflow._string(task -> 'backoff', f || '.backoff',
                                         '^(fixed|linear|exponential)$',
                                         '"fixed", "linear" or "exponential"'), 'fixed');
    fallback := workflow._string(task -> 'fallback', f || '.fallback', '\S', 'a non-empty SQL command');
    IF fallback IS NOT NULL THEN
        PERFORM workflow._check_sql(fallback, f || '.fallback');
    END IF;
    IF workflow._interval(task -> 'timeout', f || '.timeout') = interval '0' THEN
        PERFORM workflow._invalid(f || '.timeout', 'must be greater than zero');
    END IF;

    RETURN jsonb_build_object(
        'phase', phase, 'position', pos, 'name', task ->> 'name', 'kind', kind,
        'sql', body, 'task_type', task ->> 'task_type', 'wait_for', wait_for,
        'attempts', attempts, 'backoff', backoff,
        'delay', coalesce(workflow._interval(task -> 'delay', f || '.delay'), interval '0'),
        'max_delay', workflow._interval(task -> 'max_delay', f || '.max_delay'),
        'timeout', workflow._interval(task -> 'timeout', f || '.timeout'),
        'fallback', fallback);
END
$$;
COMMENT ON FUNCTION workflow._compile_task(jsonb, workflow.phase, integer, text) IS
    'internal: validate one task of a definition and compile it';

-- The "wait" of a wait task: "signal" (NULL: until resume_job) or the
-- interval of its timer.
CREATE OR REPLACE FUNCTION workflow._compile_wait(wait jsonb, f text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wait_for    interval;
BEGIN
    IF wait = '"signal"' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(wait) = 'string' THEN
        BEGIN
            PERFORM (wait #>> '{}')::interval;
        EXCEPTION WHEN invalid_datetime_format OR invalid_parameter_value THEN
            PERFORM workflow._invalid(f, format('must be "signal" or an interval such as "10 min", not %s', wait));
        END;
    END IF;
    wait_for := workflow._interval(wait, f);
    IF wait_for IS NULL THEN
        PERFORM workflow._invalid(f, 'must be "signal" or an interval such as "10 min"');
    END IF;
    RETURN wait_for;
END
$$;
COMMENT ON FUNCTION workflow._compile_wait(jsonb, text) IS
    'internal: validate the wait of a wait task: NULL for a signal, else its timer';

-- Validate one chain and return its compiled tasks as jsonb rows.
CREATE OR REPLACE FUNCTION workflow._compile_chain(chain jsonb, phase workflow.phase, required boolean)
RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF chain IS NULL OR jsonb_typeof(chain) = 'null' THEN
        IF required THEN
            PERFORM workflow._invalid(phase::text, 'is required');
        END IF;
        RETURN;
    END IF;
    IF jsonb_typeof(chain) <> 'array' THEN
        PERFORM workflow._invalid(phase::text, format('must be an array of tasks, not %s', chain));
    END IF;
    IF required AND jsonb_array_length(chain) = 0 THEN
        PERFORM workflow._invalid(phase::text, 'must contain at least one task');
    END IF;
    IF jsonb_array_length(chain) > 1000 THEN
        PERFORM workflow._invalid(phase::text, 'must not contain more than 1000 tasks');
    END IF;
    RETURN QUERY
        SELECT workflow._compile_task(e.task, phase, (e.n - 1)::integer, format('%s[%s]', phase, e.n - 1))
          FROM jsonb_array_elements(chain) WITH ORDINALITY AS e(task, n)
         ORDER BY e.n;
END
$$;
COMMENT ON FUNCTION workflow._compile_chain(jsonb, workflow.phase, boolean) IS
    'internal: validate one chain of a definition and compile its tasks';

-------------------------------------------------------------------------------
-- Definitions API
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION workflow._create_workflow(definition jsonb, p_caller oid)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wf_name     text;
    key         text;
    steps       jsonb[];
    dup         text;
    dup_field   text;
    new_version integer;
    new_id      bigint;
    v_timeout   interval;
    v_attempts  integer;
    v_search_path text;
BEGIN
    IF definition IS NULL THEN
        RAISE EXCEPTION 'workflow definition must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._check_payload(definition, 'workflow definition');
    IF jsonb_typeof(definition) <> 'object' THEN
        RAISE EXCEPTION 'workflow definition must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is a JSON %s.', jsonb_typeof(definition));
    END IF;
    FOR key IN SELECT jsonb_object_keys(definition) LOOP
        IF key NOT IN ('name', 'chain', 'onerror', 'oncancel', 'timeout', 'max_attempts',
                       'initial_delay', 'max_delay', 'on_stale', 'search_path', 'description') THEN
            PERFORM workflow._invalid(key, 'is not a known workflow field');
        END IF;
    END LOOP;
    IF NOT definition ? 'name' OR jsonb_typeof(definition -> 'name') = 'null' THEN
        PERFORM workflow._invalid('name', 'is required');
    END IF;
    wf_name := workflow._string(definition -> 'name', 'name', workflow._name_pattern(),
                                '1 to 128 letters, digits, "_", "-" or "."');
    PERFORM workflow._string(definition -> 'description', 'description', NULL, NULL);

    steps := ARRAY(
        SELECT s FROM workflow._compile_chain(definition -> 'chain', 'chain', true) s
        UNION ALL
        SELECT s FROM workflow._compile_chain(definition -> 'onerror', 'onerror', false) s
        UNION ALL
        SELECT s FROM workflow._compile_chain(definition -> 'oncancel', 'oncancel', false) s);

    SELECT format('%s[%s].name', d.phase, d.position), d.name INTO dup_field, dup
      FROM (SELECT s ->> 'phase' AS phase, s ->> 'position' AS position, s ->> 'name' AS name,
                   row_number() OVER (PARTITION BY s ->> 'name' ORDER BY o) AS n
              FROM unnest(steps) WITH ORDINALITY AS u(s, o)) d
     WHERE d.n = 2
     LIMIT 1;
    IF dup IS NOT NULL THEN
        PERFORM workflow._invalid(dup_field, format('repeats the task name "%s"; task names must be unique within a workflow', dup));
    END IF;

    v_timeout := coalesce(workflow._interval(definition -> 'timeout', 'timeout'), interval '3600 s');
    -- parsed, never applied here: it is the tasks' search_path, not ours
    v_search_path := workflow._check_search_path(
        coalesce(workflow._string(definition -> 'search_path', 'search_path', '\S',
                                  'a non-empty list of schema names'),
                 'public'));
    IF v_search_path IS NULL THEN
        PERFORM workflow._invalid('search_path', format('must be a list of schema names, not %s',
                                                        definition -> 'search_path'));
    END IF;
    v_attempts := coalesce(workflow._integer(definition -> 'max_attempts', 'max_attempts', 1, 1000), 1);

    -- one version number at a time per name
    PERFORM pg_advisory_xact_lock(hashtext('workflow.create_workflow'), hashtext(wf_name));
    SELECT coalesce(max(w.version), 0) + 1 INTO new_version
      FROM workflow.workflows w WHERE w.name = wf_name;
    IF EXISTS (SELECT 1 FROM workflow.workflows w
                WHERE w.name = wf_name AND w.version = new_version - 1
                  AND NOT workflow._may_see(w.owner, p_caller)) THEN
        RAISE EXCEPTION 'must be owner of workflow "%" to store a new version of it', wf_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Choose another name, or ask its owner or a member of workflow_admin.';
    END IF;

    INSERT INTO workflow.workflows AS w
        (name, version, definition, owner, timeout, max_attempts, initial_delay, max_delay, on_stale,
         search_path)
    VALUES (wf_name, new_version, definition,
            p_caller::regrole,
            nullif(v_timeout, interval '0'),
            v_attempts,
            coalesce(workflow._interval(definition -> 'initial_delay', 'initial_delay'), interval '1 s'),
            coalesce(workflow._interval(definition -> 'max_delay', 'max_delay'), interval '5 min'),
            workflow._string(definition -> 'on_stale', 'on_stale', '^(cancel|retry)$', '"cancel" or "retry"'),
            v_search_path)
    RETURNING w.id INTO new_id;

    INSERT INTO workflow.tasks
        (workflow_id, phase, position, name, kind, sql, task_type, wait_for,
         attempts, backoff, delay, max_delay, timeout, fallback)
    SELECT new_id, (s ->> 'phase')::workflow.phase, (s ->> 'position')::integer, s ->> 'name',
           s ->> 'kind', s ->> 'sql', s ->> 'task_type', (s ->> 'wait_for')::interval,
           (s ->> 'attempts')::integer, s ->> 'backoff', (s ->> 'delay')::interval,
           (s ->> 'max_delay')::interval, (s ->> 'timeout')::interval, s ->> 'fallback'
      FROM unnest(steps) s;

    RETURN new_version;
END
$$;
COMMENT ON FUNCTION workflow._create_workflow(jsonb, oid) IS
    'internal: implementation of workflow.create_workflow, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._drop_workflow(name text, force boolean, p_caller oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    live    bigint;
    ids     bigint[];
BEGIN
    IF name IS NULL OR force IS NULL THEN
        RAISE EXCEPTION 'workflow name and force must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- serialise with create_workflow and concurrent drops of the same name
    PERFORM pg_advisory_xact_lock(hashtext('workflow.create_workflow'), hashtext(_drop_workflow.name));
    ids := ARRAY(SELECT w.id FROM workflow.workflows w WHERE w.name = _drop_workflow.name FOR UPDATE);
    IF cardinality(ids) = 0 THEN
        RAISE EXCEPTION 'workflow "%" does not exist', _drop_workflow.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM workflow.workflows w
                WHERE w.id = ANY (ids) AND NOT workflow._may_see(w.owner, p_caller)) THEN
        RAISE EXCEPTION 'must be owner of workflow "%"', _drop_workflow.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT count(*) INTO live FROM workflow.jobs j
     WHERE j.workflow_id = ANY (ids) AND j.execution IN ('queued', 'running', 'waiting');
    IF live > 0 AND NOT force THEN
        RAISE EXCEPTION 'cannot drop workflow "%" because % of its jobs are not finished',
                        _drop_workflow.name, live
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Cancel them with workflow.cancel_job(), wait for them to finish, or use force => true to drop the workflow with its jobs.';
    END IF;
    DELETE FROM workflow.target_locks l
     USING workflow.jobs j WHERE l.job_id = j.id AND j.workflow_id = ANY (ids);
    DELETE FROM workflow.task_runs t
     USING workflow.jobs j WHERE t.job_id = j.id AND j.workflow_id = ANY (ids);
    DELETE FROM workflow.job_info i
     USING workflow.jobs j WHERE i.job_id = j.id AND j.workflow_id = ANY (ids);
    DELETE FROM workflow.jobs j WHERE j.workflow_id = ANY (ids);
    DELETE FROM workflow.tasks s WHERE s.workflow_id = ANY (ids);
    DELETE FROM workflow.workflows w WHERE w.id = ANY (ids);
END
$$;
COMMENT ON FUNCTION workflow._drop_workflow(text, boolean, oid) IS
    'internal: implementation of workflow.drop_workflow, with the calling role (src/api.c)';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c)

CREATE OR REPLACE FUNCTION workflow.create_workflow(definition jsonb)
RETURNS integer
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.create_workflow(jsonb) IS
    'validate and store a workflow definition; returns its version (1 for a new name, one more for an existing one)';

CREATE OR REPLACE FUNCTION workflow.drop_workflow(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.drop_workflow(text, boolean) IS
    'drop every version of a workflow and its jobs; refused while jobs are not finished unless force => true';
