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

-- The fields every chain entry may have, and those of its kind.
CREATE OR REPLACE FUNCTION workflow._entry_fields(kind text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['name', 'description', 'attempts', 'backoff', 'delay', 'max_delay', 'timeout']
       || CASE kind
              WHEN 'sql' THEN ARRAY['sql', 'fallback']
              WHEN 'external' THEN ARRAY['task_type', 'fallback']
              WHEN 'wait' THEN ARRAY['wait', 'key']
              WHEN 'parallel' THEN ARRAY['parallel', 'fail_fast']
              WHEN 'switch' THEN ARRAY['switch', 'cases', 'default']
              WHEN 'workflow' THEN ARRAY['workflow', 'version', 'params']
              WHEN 'foreach' THEN ARRAY['foreach', 'do', 'concurrency', 'fail_fast']
          END;
COMMENT ON FUNCTION workflow._entry_fields(text) IS
    'internal: the fields a chain entry of a kind may have';

-- Validate one entry of a chain, at position pos of phase (f: its path in
-- the definition, for the messages; sub: the chain it belongs to, '' for
-- the workflow's own chains, else "<entry>/<branch>"; depth: how deep the
-- chain is nested), and return it compiled as a jsonb row of
-- workflow.tasks with the chain's "sub", followed by the entries of the
-- chains it holds (a parallel entry's branches, a switch's cases, a
-- foreach body), each chain stored as a workflow of its own.
CREATE OR REPLACE FUNCTION workflow._compile_task(task jsonb, phase workflow.phase, pos integer, f text,
                                                 sub text, depth integer)
RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key         text;
    kind        text;
    kinds       text[];
    wait_for    interval;
    body        text;
    attempts    integer;
    backoff     text;
    fallback    text;
    spawn       jsonb;
    nested      jsonb[] := '{}';
    n           integer;
    branch      record;
    concurrency integer;
BEGIN
    IF jsonb_typeof(task) <> 'object' THEN
        PERFORM workflow._invalid(f, format('must be a task object, not %s', task));
    END IF;
    kinds := ARRAY(SELECT k FROM unnest(ARRAY['sql', 'task_type', 'wait', 'parallel', 'switch',
                                              'workflow', 'foreach']) k
                    WHERE task ? k);
    IF cardinality(kinds) <> 1 THEN
        PERFORM workflow._invalid(f, 'must have exactly one of "sql", "task_type", "wait", "parallel", "switch", "workflow" or "foreach"');
    END IF;
    kind := CASE kinds[1] WHEN 'task_type' THEN 'external' ELSE kinds[1] END;
    FOR key IN SELECT jsonb_object_keys(task) LOOP
        IF key <> ALL (workflow._entry_fields(kind)) THEN
            IF key = ANY (ARRAY['sql', 'task_type', 'wait', 'attempts', 'backoff', 'delay', 'max_delay',
                                'timeout', 'fallback', 'key', 'parallel', 'fail_fast', 'switch',
                                'cases', 'default', 'workflow', 'version', 'params', 'foreach', 'do',
                                'concurrency']) THEN
                PERFORM workflow._invalid(f || '.' || key,
                    format('is not allowed on %s', CASE kind
                        WHEN 'sql' THEN 'an SQL task' WHEN 'external' THEN 'an external task'
                        WHEN 'wait' THEN 'a wait task' ELSE format('a %s entry', kind) END));
            END IF;
            PERFORM workflow._invalid(f || '.' || key, 'is not a known task field');
        END IF;
    END LOOP;
    IF NOT task ? 'name' OR jsonb_typeof(task -> 'name') = 'null' THEN
        PERFORM workflow._invalid(f || '.name', 'is required');
    END IF;
    PERFORM workflow._string(task -> 'name', f || '.name', workflow._name_pattern(),
                             '1 to 128 letters, digits, "_", "-" or "."');
    PERFORM workflow._string(task -> 'description', f || '.description', NULL, NULL);

    CASE kind
    WHEN 'sql' THEN
        body := workflow._string(task -> 'sql', f || '.sql', '\S', 'a non-empty SQL command');
        IF body IS NULL THEN
            PERFORM workflow._invalid(f || '.sql', 'must be a non-empty SQL command');
        END IF;
        PERFORM workflow._check_sql(body, f || '.sql');
    WHEN 'external' THEN
        IF workflow._string(task -> 'task_type', f || '.task_type', workflow._name_pattern(),
                            '1 to 128 letters, digits, "_", "-" or "."') IS NULL THEN
            PERFORM workflow._invalid(f || '.task_type', 'must be a task type name');
        END IF;
    WHEN 'wait' THEN
        wait_for := workflow._compile_wait(task -> 'wait', f || '.wait');
        IF task ? 'key' THEN
            IF wait_for IS NOT NULL THEN
                PERFORM workflow._invalid(f || '.key', 'is allowed only with "wait": "signal"');
            END IF;
            body := workflow._compile_query(task -> 'key', f || '.key');
        END IF;
    WHEN 'parallel' THEN
        IF jsonb_typeof(task -> 'parallel') <> 'object' OR task -> 'parallel' = '{}' THEN
            PERFORM workflow._invalid(f || '.parallel', 'must be an object of branches, each a non-empty array of tasks');
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(task -> 'parallel')) > 100 THEN
            PERFORM workflow._invalid(f || '.parallel', 'must not have more than 100 branches');
        END IF;
        FOR branch IN SELECT e.key, e.value FROM jsonb_each(task -> 'parallel') e LOOP
            IF branch.key !~ workflow._name_pattern() THEN
                PERFORM workflow._invalid(f || '.parallel', format('has an invalid branch name "%s": a branch name is 1 to 128 letters, digits, "_", "-" or "."', left(branch.key, 200)));
            END IF;
            nested := nested || ARRAY(SELECT workflow._compile_chain(branch.value, 'chain',
                          format('%s/%s', task ->> 'name', branch.key),
                          format('%s.parallel.%s', f, branch.key), depth + 1));
        END LOOP;
        IF task ? 'fail_fast' AND jsonb_typeof(task -> 'fail_fast') <> 'boolean' THEN
            PERFORM workflow._invalid(f || '.fail_fast', format('must be true or false, not %s', task -> 'fail_fast'));
        END IF;
        spawn := jsonb_build_object('branches', (SELECT jsonb_agg(k ORDER BY o)
                                                   FROM jsonb_object_keys(task -> 'parallel') WITH ORDINALITY AS b(k, o)),
                                    'fail_fast', coalesce((task -> 'fail_fast')::boolean, true));
    WHEN 'switch' THEN
        body := workflow._compile_query(task -> 'switch', f || '.switch');
        IF task ? 'cases' AND jsonb_typeof(task -> 'cases') <> 'object' THEN
            PERFORM workflow._invalid(f || '.cases', 'must be an object of cases, each a non-empty array of tasks');
        END IF;
        IF coalesce(task -> 'cases', '{}') = '{}' AND NOT task ? 'default' THEN
            PERFORM workflow._invalid(f, 'must have "cases" or a "default"');
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(coalesce(task -> 'cases', '{}'))) > 100 THEN
            PERFORM workflow._invalid(f || '.cases', 'must not have more than 100 cases');
        END IF;
        n := 0;
        FOR branch IN SELECT e.key, e.value FROM jsonb_each(coalesce(task -> 'cases', '{}')) e LOOP
            IF length(branch.key) > 1000 THEN
                PERFORM workflow._invalid(f || '.cases', 'has a case value longer than 1000 characters');
            END IF;
            nested := nested || ARRAY(SELECT workflow._compile_chain(branch.value, 'chain',
                          format('%s/%s', task ->> 'name', n),
                          format('%s.cases.%s', f, branch.key), depth + 1));
            n := n + 1;
        END LOOP;
        IF task ? 'default' THEN
            nested := nested || ARRAY(SELECT workflow._compile_chain(task -> 'default', 'chain',
                          format('%s/default', task ->> 'name'), f || '.default', depth + 1));
        END IF;
        spawn := jsonb_build_object('cases', coalesce((SELECT jsonb_agg(k ORDER BY o)
                                                         FROM jsonb_object_keys(task -> 'cases') WITH ORDINALITY AS c(k, o)), '[]'),
                                    'default', task ? 'default');
    WHEN 'workflow' THEN
        spawn := workflow._compile_child_workflow(task, f);
        IF task ? 'params' THEN
            body := workflow._compile_query(task -> 'params', f || '.params');
        END IF;
    WHEN 'foreach' THEN
        body := workflow._compile_query(task -> 'foreach', f || '.foreach');
        -- every row is an item: collected into one array (a single row
        -- holding an array is the list itself: _spawn unwraps it)
        body := format('SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t.item)) FROM (%s) AS t(item)', body);
        IF NOT task ? 'do' THEN
            PERFORM workflow._invalid(f || '.do', 'is required');
        END IF;
        IF jsonb_typeof(task -> 'do') = 'array' THEN
            nested := ARRAY(SELECT workflow._compile_chain(task -> 'do', 'chain',
                          format('%s/do', task ->> 'name'), f || '.do', depth + 1));
            spawn := jsonb_build_object('chain', true);
        ELSIF jsonb_typeof(task -> 'do') = 'object' THEN
            FOR key IN SELECT jsonb_object_keys(task -> 'do') LOOP
                IF key NOT IN ('workflow', 'version') THEN
                    PERFORM workflow._invalid(f || '.do.' || key, 'is not a known field of a sub-workflow');
                END IF;
            END LOOP;
            spawn := workflow._compile_child_workflow(task -> 'do', f || '.do');
        ELSE
            PERFORM workflow._invalid(f || '.do', format('must be an array of tasks or {"workflow": "<name>"}, not %s', task -> 'do'));
        END IF;
        concurrency := workflow._integer(task -> 'concurrency', f || '.concurrency', 1, 100000);
        IF task ? 'fail_fast' AND jsonb_typeof(task -> 'fail_fast') <> 'boolean' THEN
            PERFORM workflow._invalid(f || '.fail_fast', format('must be true or false, not %s', task -> 'fail_fast'));
        END IF;
        spawn := spawn || jsonb_build_object('concurrency', concurrency,
                                             'fail_fast', coalesce((task -> 'fail_fast')::boolean, true));
    END CASE;

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

    RETURN NEXT jsonb_build_object(
        'sub', sub, 'phase', phase, 'position', pos, 'name', task ->> 'name', 'kind', kind,
        'sql', body, 'task_type', task ->> 'task_type', 'wait_for', wait_for,
        'attempts', attempts, 'backoff', backoff,
        'delay', coalesce(workflow._interval(task -> 'delay', f || '.delay'), interval '0'),
        'max_delay', workflow._interval(task -> 'max_delay', f || '.max_delay'),
        'timeout', workflow._interval(task -> 'timeout', f || '.timeout'),
        'fallback', fallback, 'spawn', spawn, 'path', f);
    RETURN QUERY SELECT unnest(nested);
END
$$;
COMMENT ON FUNCTION workflow._compile_task(jsonb, workflow.phase, integer, text, text, integer) IS
    'internal: validate one entry of a definition and compile it, with the chains it holds';

-- The SQL of a control-flow expression: one query returning rows.
CREATE OR REPLACE FUNCTION workflow._compile_query(value jsonb, f text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    body    text;
BEGIN
    body := workflow._string(value, f, '\S', 'a non-empty SQL query');
    IF body IS NULL THEN
        PERFORM workflow._invalid(f, 'must be a non-empty SQL query');
    END IF;
    RETURN workflow._check_query(body, f);
END
$$;
COMMENT ON FUNCTION workflow._compile_query(jsonb, text) IS
    'internal: validate the SQL query of a control-flow expression';

-- The workflow a sub-workflow entry (or a foreach body) starts: its name
-- and optional version, which must exist (checked by _create_workflow,
-- which knows the name being stored).
CREATE OR REPLACE FUNCTION workflow._compile_child_workflow(entry jsonb, f text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    child   text;
BEGIN
    child := workflow._string(entry -> 'workflow', f || '.workflow', workflow._name_pattern(),
                              'a workflow name');
    IF child IS NULL THEN
        PERFORM workflow._invalid(f || '.workflow', 'must be a workflow name');
    END IF;
    RETURN jsonb_build_object('workflow', child,
                              'version', workflow._integer(entry -> 'version', f || '.version', 1, 2147483647),
                              'path', f);
END
$$;
COMMENT ON FUNCTION workflow._compile_child_workflow(jsonb, text) IS
    'internal: validate the workflow a sub-workflow entry starts';

-- The "wait" of a wait task: "signal" (NULL: until resume_job, or until
-- workflow.signal() of its key) or the interval of its timer.
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

-- Validate one chain (f: its path in the definition; sub and depth as for
-- _compile_task) and return its compiled entries, with those of the
-- chains they hold, as jsonb rows.
CREATE OR REPLACE FUNCTION workflow._compile_chain(chain jsonb, phase workflow.phase, sub text, f text,
                                                  depth integer)
RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF depth > 8 THEN
        PERFORM workflow._invalid(f, 'nests control-flow entries more than 8 levels deep');
    END IF;
    IF jsonb_typeof(chain) IS DISTINCT FROM 'array' THEN
        PERFORM workflow._invalid(f, format('must be an array of tasks, not %s', chain));
    END IF;
    IF sub <> '' AND jsonb_array_length(chain) = 0 THEN
        PERFORM workflow._invalid(f, 'must contain at least one task');
    END IF;
    IF jsonb_array_length(chain) > 1000 THEN
        PERFORM workflow._invalid(f, 'must not contain more than 1000 tasks');
    END IF;
    RETURN QUERY
        SELECT s
          FROM jsonb_array_elements(chain) WITH ORDINALITY AS e(task, n),
               workflow._compile_task(e.task, phase, (e.n - 1)::integer, format('%s[%s]', f, e.n - 1),
                                      sub, depth) WITH ORDINALITY AS c(s, o)
         ORDER BY e.n, c.o;
END
$$;
COMMENT ON FUNCTION workflow._compile_chain(jsonb, workflow.phase, text, text, integer) IS
    'internal: validate one chain of a definition and compile its entries, with the chains they hold';

-- A top-level chain of a definition: chain (required, not empty),
-- onerror or oncancel.
CREATE OR REPLACE FUNCTION workflow._compile_phase(chain jsonb, phase workflow.phase, required boolean)
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
    RETURN QUERY SELECT workflow._compile_chain(chain, phase, '', phase::text, 1);
END
$$;
COMMENT ON FUNCTION workflow._compile_phase(jsonb, workflow.phase, boolean) IS
    'internal: validate one of the chains of a definition (chain, onerror, oncancel) and compile it';

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
    v_version   integer;
    v_queue     text;
    v_key_sql   text;
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
                       'initial_delay', 'max_delay', 'on_stale', 'search_path', 'description',
                       'queue', 'concurrency_key') THEN
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
        SELECT s FROM workflow._compile_phase(definition -> 'chain', 'chain', true) s
        UNION ALL
        SELECT s FROM workflow._compile_phase(definition -> 'onerror', 'onerror', false) s
        UNION ALL
        SELECT s FROM workflow._compile_phase(definition -> 'oncancel', 'oncancel', false) s);

    -- entry names are unique in the whole definition, branches included
    SELECT d.path || '.name', d.name INTO dup_field, dup
      FROM (SELECT s ->> 'path' AS path, s ->> 'name' AS name,
                   row_number() OVER (PARTITION BY s ->> 'name' ORDER BY o) AS n
              FROM unnest(steps) WITH ORDINALITY AS u(s, o)) d
     WHERE d.n = 2
     LIMIT 1;
    IF dup IS NOT NULL THEN
        PERFORM workflow._invalid(dup_field, format('repeats the task name "%s"; task names must be unique within a workflow', dup));
    END IF;
    -- the workflows that sub-workflow entries start must exist (this one
    -- included: a workflow may start a new job of itself)
    SELECT c.path || '.workflow', c.child, c.version INTO dup_field, dup, v_version
      FROM (SELECT s -> 'spawn' ->> 'path' AS path, s -> 'spawn' ->> 'workflow' AS child,
                   (s -> 'spawn' ->> 'version')::integer AS version, o
              FROM unnest(steps) WITH ORDINALITY AS u(s, o)
             WHERE s -> 'spawn' ? 'workflow') c
     WHERE NOT EXISTS (SELECT 1 FROM workflow.workflows w
                        WHERE w.name = c.child AND w.part_of IS NULL
                          AND (c.version IS NULL OR w.version = c.version))
       AND (c.child <> wf_name OR c.version IS NOT NULL)
     ORDER BY c.o
     LIMIT 1;
    IF dup IS NOT NULL THEN
        PERFORM workflow._invalid(dup_field, CASE WHEN v_version IS NULL
            THEN format('names workflow "%s", which does not exist', dup)
            ELSE format('names version %s of workflow "%s", which does not exist', v_version, dup) END);
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
    v_queue := coalesce(workflow._string(definition -> 'queue', 'queue', workflow._name_pattern(),
                                         '1 to 128 letters, digits, "_", "-" or "."'),
                        'default');
    IF v_queue <> 'default' THEN
        -- kept from drop_queue until this transaction ends
        PERFORM workflow._lock_queue(v_queue, false);
        IF NOT workflow._queue_exists(v_queue) THEN
            PERFORM workflow._invalid('queue', format('names queue "%s", which does not exist', v_queue));
        END IF;
    END IF;
    IF definition ? 'concurrency_key' THEN
        v_key_sql := workflow._compile_query(definition -> 'concurrency_key', 'concurrency_key');
    END IF;

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
         search_path, queue, concurrency_key)
    VALUES (wf_name, new_version, definition,
            p_caller::regrole,
            nullif(v_timeout, interval '0'),
            v_attempts,
            coalesce(workflow._interval(definition -> 'initial_delay', 'initial_delay'), interval '1 s'),
            coalesce(workflow._interval(definition -> 'max_delay', 'max_delay'), interval '5 min'),
            workflow._string(definition -> 'on_stale', 'on_stale', '^(cancel|retry)$', '"cancel" or "retry"'),
            v_search_path, v_queue, v_key_sql)
    RETURNING w.id INTO new_id;

    -- the chains of control-flow entries: a workflow each, part of this one
    INSERT INTO workflow.workflows AS w
        (name, version, definition, owner, timeout, max_attempts, initial_delay, max_delay,
         on_stale, search_path, part_of)
    SELECT format('%s/%s', wf_name, c.sub), new_version,
           jsonb_build_object('name', format('%s/%s', wf_name, c.sub), 'part_of', wf_name),
           p_caller::regrole, NULL, 1, interval '1 s', interval '5 min',
           (SELECT w0.on_stale FROM workflow.workflows w0 WHERE w0.id = new_id),
           v_search_path, new_id
      FROM (SELECT DISTINCT s ->> 'sub' AS sub FROM unnest(steps) s WHERE s ->> 'sub' <> '') c;

    INSERT INTO workflow.tasks
        (workflow_id, phase, position, name, kind, sql, task_type, wait_for,
         attempts, backoff, delay, max_delay, timeout, fallback, spawn)
    SELECT coalesce(w.id, new_id), (s ->> 'phase')::workflow.phase, (s ->> 'position')::integer,
           s ->> 'name', s ->> 'kind', s ->> 'sql', s ->> 'task_type', (s ->> 'wait_for')::interval,
           (s ->> 'attempts')::integer, s ->> 'backoff', (s ->> 'delay')::interval,
           (s ->> 'max_delay')::interval, (s ->> 'timeout')::interval, s ->> 'fallback',
           nullif(s -> 'spawn', 'null') - 'path'
      FROM unnest(steps) s
      LEFT JOIN workflow.workflows w ON s ->> 'sub' <> '' AND w.part_of = new_id
           AND w.name = format('%s/%s', wf_name, s ->> 'sub') AND w.version = new_version;

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
    ids := ARRAY(SELECT w.id FROM workflow.workflows w
                  WHERE w.name = _drop_workflow.name AND w.part_of IS NULL FOR UPDATE);
    IF cardinality(ids) = 0 THEN
        RAISE EXCEPTION 'workflow "%" does not exist', _drop_workflow.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM workflow.workflows w
                WHERE w.id = ANY (ids) AND NOT workflow._may_see(w.owner, p_caller)) THEN
        RAISE EXCEPTION 'must be owner of workflow "%"', _drop_workflow.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- with the chains of their control-flow entries
    ids := ids || ARRAY(SELECT w.id FROM workflow.workflows w WHERE w.part_of = ANY (ids));
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
    DELETE FROM workflow.joins n
     USING workflow.jobs j WHERE n.job_id = j.id AND j.workflow_id = ANY (ids);
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
