-- Schedules (pg_cron)
-------------------------------------------------------------------------------

-- The hint given when pg_cron is missing.
CREATE OR REPLACE FUNCTION workflow._require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cron')
       AND NOT has_schema_privilege('cron', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied for schema cron'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Schedules are pg_cron jobs of their creator: an administrator can run GRANT USAGE ON SCHEMA cron TO %I.',
                                current_user);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cron')
       OR to_regprocedure('cron.schedule(text,text,text)') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Install the postgresql-15-cron package, add pg_cron to shared_preload_libraries, '
                                'set cron.database_name = %L, restart the server and run CREATE EXTENSION pg_cron '
                                'in this database.', current_database());
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._require_pg_cron() IS
    'internal: raise a clear error with a hint when pg_cron is not installed in this database';

-- SECURITY INVOKER on purpose: pg_cron records the schedule as the calling
-- role and runs its command as that role, so the jobs it creates are the
-- caller's, never another role's.
CREATE OR REPLACE FUNCTION workflow.schedule(name text, cron text, workflow text, params jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    jobid   bigint;
BEGIN
    IF schedule.name IS NULL OR schedule.cron IS NULL OR schedule.workflow IS NULL
       OR schedule.params IS NULL THEN
        RAISE EXCEPTION 'name, cron, workflow and params must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._check_name(schedule.name, 'schedule name', false);
    IF jsonb_typeof(schedule.params) <> 'object' THEN
        RAISE EXCEPTION 'job params must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM workflow._check_payload(schedule.params, 'job params');
    IF NOT EXISTS (SELECT 1 FROM workflow.workflows w WHERE w.name = schedule.workflow) THEN
        RAISE EXCEPTION 'workflow "%" does not exist', schedule.workflow
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with workflow.create_workflow().';
    END IF;
    PERFORM workflow._require_pg_cron();
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
       INTO jobid
      USING 'workflow:' || schedule.name, schedule.cron,
            format('SELECT workflow.create_job(%L, %L::jsonb)', schedule.workflow, schedule.params);
    RETURN jobid;
END
$$;
COMMENT ON FUNCTION workflow.schedule(text, text, text, jsonb) IS
    'create (or change) a pg_cron schedule that creates a job of the workflow with these params; returns the pg_cron job id';

CREATE OR REPLACE FUNCTION workflow.unschedule(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    found_it boolean;
BEGIN
    PERFORM workflow._check_name(unschedule.name, 'schedule name', false);
    PERFORM workflow._require_pg_cron();
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1)'
       INTO found_it USING 'workflow:' || unschedule.name;
    IF NOT found_it THEN
        RAISE EXCEPTION 'schedule "%" does not exist', unschedule.name
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE 'SELECT cron.unschedule($1)' USING 'workflow:' || unschedule.name;
END
$$;
COMMENT ON FUNCTION workflow.unschedule(text) IS
    'remove a schedule made with workflow.schedule()';

-- Next time a standard five-field cron expression fires after `after'
-- (minute hour day-of-month month day-of-week; *, lists, ranges, steps),
-- in UTC like pg_cron by default; NULL for other forms ('30 seconds',
-- '@daily', '$').  Searches day by day for at most four years.
CREATE OR REPLACE FUNCTION workflow._cron_next(expr text, after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f       text[];
    minutes int[];
    hours   int[];
    doms    int[];
    months  int[];
    dows    int[];
    t       timestamp := date_trunc('minute', after AT TIME ZONE 'UTC') + interval '1 minute';
    d       date;
    h       int;
    m       int;
    i       int;
BEGIN
    IF expr IS NULL OR after IS NULL THEN
        RETURN NULL;
    END IF;
    f := regexp_split_to_array(btrim(expr), '\s+');
    IF array_length(f, 1) <> 5 THEN
        RETURN NULL;
    END IF;
    minutes := workflow._cron_field(f[1], 0, 59);
    hours := workflow._cron_field(f[2], 0, 23);
    doms := workflow._cron_field(f[3], 1, 31);
    months := workflow._cron_field(f[4], 1, 12);
    -- 0 and 7 are both Sunday
    dows := ARRAY(SELECT DISTINCT v % 7 FROM unnest(workflow._cron_field(f[5], 0, 7)) v ORDER BY 1);
    IF cardinality(dows) = 0 THEN
        dows := NULL;
    END IF;
    IF minutes IS NULL OR hours IS NULL OR doms IS NULL OR months IS NULL OR dows IS NULL THEN
        RETURN NULL;
    END IF;
    -- four years and a day: long enough for 29 February
    FOR i IN 0..1461 LOOP
        d := t::date + i;
        CONTINUE WHEN NOT extract(month FROM d)::int = ANY (months);
        -- cron: when both day fields are restricted (do not start with
        -- "*"), either may match; otherwise both must
        IF f[3] NOT LIKE '*%' AND f[5] NOT LIKE '*%' THEN
            CONTINUE WHEN NOT (extract(day FROM d)::int = ANY (doms)
                               OR extract(dow FROM d)::int = ANY (dows));
        ELSE
            CONTINUE WHEN NOT (extract(day FROM d)::int = ANY (doms)
                               AND extract(dow FROM d)::int = ANY (dows));
        END IF;
        FOREACH h IN ARRAY hours LOOP
            FOREACH m IN ARRAY minutes LOOP
                IF d + make_time(h, m, 0) >= t THEN
                    RETURN (d + make_time(h, m, 0)) AT TIME ZONE 'UTC';
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION workflow._cron_next(text, timestamptz) IS
    'internal: next firing time of a five-field cron expression (UTC), or NULL';

-- The sorted values a cron field stands for, or NULL if it is not
-- understood.
CREATE OR REPLACE FUNCTION workflow._cron_field(field text, lo int, hi int)
RETURNS int[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part    text;
    m       text[];
    a       int;
    b       int;
    step    int;
    vals    int[] := '{}';
BEGIN
    -- cron's ranges only: never a huge series
    IF field IS NULL OR lo IS NULL OR hi IS NULL OR lo < 0 OR hi > 59 OR lo > hi THEN
        RETURN NULL;
    END IF;
    FOREACH part IN ARRAY string_to_array(field, ',') LOOP
        m := regexp_match(part, '^(\*|(\d{1,2})(?:-(\d{1,2}))?)(?:/(\d{1,2}))?$');
        IF m IS NULL THEN
            RETURN NULL;
        END IF;
        IF m[1] = '*' THEN
            a := lo; b := hi;
        ELSE
            a := m[2]::int;
            b := coalesce(m[3]::int, CASE WHEN m[4] IS NOT NULL THEN hi ELSE a END);
        END IF;
        step := coalesce(m[4]::int, 1);
        IF a < lo OR b > hi OR a > b OR step < 1 THEN
            RETURN NULL;
        END IF;
        vals := vals || ARRAY(SELECT generate_series(a, b, step));
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT v FROM unnest(vals) v ORDER BY v);
END
$$;
COMMENT ON FUNCTION workflow._cron_field(text, int, int) IS
    'internal: expand one field of a cron expression';

-- A text as jsonb, or NULL when it is not JSON: a pg_cron command named
-- like a schedule but written by hand must not break the view.
CREATE OR REPLACE FUNCTION workflow._jsonb_or_null(value text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION workflow._jsonb_or_null(text) IS
    'internal: parse a text as jsonb, NULL when it is not JSON';

-- The schedules, read from pg_cron when it is installed (empty otherwise),
-- with the invoker's rights: pg_cron shows a role its own schedules.
CREATE OR REPLACE FUNCTION workflow._schedules()
RETURNS TABLE (name text, cron text, workflow text, params jsonb, active boolean,
               owner text, cron_job_id bigint, next_run timestamptz,
               last_run_started timestamptz, last_run_finished timestamptz,
               last_run_status text, last_run_message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- no pg_cron here, or no access to it: no schedules to show
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cron')
       OR NOT has_schema_privilege('cron', 'USAGE')
       OR to_regclass('cron.job') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT substr(j.jobname, 10), j.schedule,
               replace((regexp_match(j.command, $r$create_job\('((?:[^']|'')*)'$r$))[1], '''''', ''''),
               (SELECT workflow._jsonb_or_null(
                           CASE WHEN m[1] = 'E'
                                THEN replace(replace(m[2], '''''', ''''), '\\', '\')
                                ELSE replace(m[2], '''''', '''') END)
                  FROM regexp_match(j.command, $r$, (E?)'((?:[^']|'')*)'::jsonb\)$r$) AS m),
               j.active, j.username::text, j.jobid,
               workflow._cron_next(j.schedule, now()),
               r.start_time, r.end_time, r.status, r.return_message
          FROM cron.job j
          LEFT JOIN LATERAL (SELECT d.start_time, d.end_time, d.status, d.return_message
                               FROM cron.job_run_details d
                              WHERE d.jobid = j.jobid
                              ORDER BY d.runid DESC LIMIT 1) r ON true
         WHERE j.jobname LIKE 'workflow:%'
         ORDER BY 1 $q$;
END
$$;
COMMENT ON FUNCTION workflow._schedules() IS
    'internal: the schedules made with workflow.schedule(), as pg_cron reports them';

CREATE OR REPLACE VIEW workflow.schedules WITH (security_invoker = true) AS
SELECT * FROM workflow._schedules();
COMMENT ON VIEW workflow.schedules IS
    'schedules made with workflow.schedule(): cron expression, workflow, params, next run (five-field expressions) and last run as pg_cron reports it';

-------------------------------------------------------------------------------
