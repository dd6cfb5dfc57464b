--
-- Workflow definitions: create_workflow (valid definitions, versions, what is
-- compiled, every invalid case) and drop_workflow.
--
-- Every workflow created here is named def_*; the file drops them all at
-- the end.  Job ids are never printed.
--
\set SHOW_CONTEXT never

-------------------------------------------------------------------------------
-- A full valid definition: chain, onerror, oncancel and every task field
-------------------------------------------------------------------------------

SELECT workflow.create_workflow($${
  "name": "def_full",
  "description": "every field of a definition",
  "timeout": "2 hours",
  "max_attempts": 3,
  "initial_delay": "2 s",
  "max_delay": 600,
  "on_stale": "retry",
  "search_path": "app, \"My Schema\", public",
  "chain": [
    {"name": "reserve", "description": "an SQL task with every option",
     "sql": "select $1 -> 'job' -> 'params'",
     "attempts": 3, "backoff": "exponential", "delay": "1 s", "max_delay": "1 min",
     "timeout": "30 s", "fallback": "select '{\"fallback\": true}'::jsonb"},
    {"name": "pay", "task_type": "payment", "attempts": 5, "backoff": "linear",
     "delay": 2, "timeout": 45.5},
    {"name": "cool_down", "wait": "10 min"},
    {"name": "confirm", "wait": "signal", "attempts": 2, "backoff": "fixed", "delay": "500 ms"},
    {"name": "ship.v2-final", "sql": "select 1; select 2"}
  ],
  "onerror": [
    {"name": "undo", "sql": "select 'undo'", "attempts": 1000}
  ],
  "oncancel": [
    {"name": "notify", "task_type": "notify.v1"},
    {"name": "clean-up", "sql": "SELECT 'cleanup' -- a comment"}
  ]
}$$);

-- the compiled settings, defaults applied
SELECT name, version, timeout, max_attempts, initial_delay, max_delay, on_stale, search_path,
       owner = current_user::regrole AS owned_by_me,
       definition ->> 'description' AS description
  FROM workflow.workflows WHERE name = 'def_full';

-- one row per task and chain, 0-based positions within each phase
SELECT s.phase, s.position, s.name, s.kind, s.task_type, s.wait_for, s.attempts,
       s.backoff, s.delay, s.max_delay, s.timeout
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'def_full'
 ORDER BY s.phase, s.position;

SELECT s.phase, s.position, s.sql, s.fallback
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'def_full' AND s.kind = 'sql'
 ORDER BY s.phase, s.position;

-- the definition is stored as given
SELECT definition -> 'chain' -> 1 AS second_task
  FROM workflow.workflows WHERE name = 'def_full';

-- A minimal definition: every default
SELECT workflow.create_workflow('{"name": "def_min", "chain": [{"name": "only", "sql": "select 1"}]}');
SELECT name, version, timeout, max_attempts, initial_delay, max_delay, on_stale, search_path
  FROM workflow.workflows WHERE name = 'def_min';
SELECT s.phase, s.position, s.name, s.kind, s.sql, s.task_type, s.wait_for, s.attempts,
       s.backoff, s.delay, s.max_delay, s.timeout, s.fallback
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'def_min';

-- The workflow timeout as interval text, as a number of seconds, and 0 (none);
-- empty or null optional chains; null optional fields take their defaults
SELECT workflow.create_workflow('{"name": "def_secs", "timeout": 90, "chain": [{"name": "a", "sql": "select 1"}], "onerror": []}');
SELECT workflow.create_workflow('{"name": "def_frac", "timeout": 1.5, "initial_delay": 0, "max_delay": "1 day", "chain": [{"name": "a", "sql": "select 1"}], "oncancel": null}');
SELECT workflow.create_workflow('{"name": "def_none", "timeout": 0, "on_stale": "cancel", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "def_nulls", "timeout": null, "max_attempts": null, "on_stale": null, "chain": [{"name": "a", "sql": "select 1", "attempts": null, "backoff": null, "delay": null}]}');
SELECT name, timeout, max_attempts, initial_delay, max_delay, on_stale
  FROM workflow.workflows WHERE name IN ('def_secs', 'def_frac', 'def_none', 'def_nulls')
 ORDER BY name;
SELECT w.name, count(s.*) AS steps
  FROM workflow.workflows w LEFT JOIN workflow.tasks s ON s.workflow_id = w.id
 WHERE w.name IN ('def_secs', 'def_frac', 'def_none', 'def_nulls')
 GROUP BY w.name ORDER BY w.name;
SELECT s.name, s.attempts, s.backoff, s.delay
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'def_nulls';

-- Names: letters, digits, "_", "-" and "." up to 128 characters
SELECT workflow.create_workflow(jsonb_build_object('name', 'Def.' || repeat('x', 124),
       'chain', '[{"name": "A-1_b.c", "sql": "select 1"}]'::jsonb));
SELECT length(name) FROM workflow.workflows WHERE name LIKE 'Def.%';

-------------------------------------------------------------------------------
-- Versions
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "def_ver", "chain": [{"name": "one", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "def_ver", "chain": [{"name": "one", "sql": "select 1"}, {"name": "two", "sql": "select 2"}]}');
SELECT name, version FROM workflow.workflows WHERE name = 'def_ver' ORDER BY version;
-- each version keeps its own tasks
SELECT w.version, s.position, s.name
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'def_ver' ORDER BY w.version, s.position;
-- create_job uses the latest version unless one is given
SELECT workflow.create_job('def_ver') AS latest \gset
SELECT workflow.create_job('def_ver', version => 1) AS first \gset
SELECT id = :latest AS latest_job, workflow, version FROM workflow.jobs
 WHERE id IN (:latest, :first) ORDER BY version;

-------------------------------------------------------------------------------
-- Invalid definitions: the whole document
-------------------------------------------------------------------------------

SELECT workflow.create_workflow(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('[]');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('"def_x"');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('null');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "steps": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "description": 7, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE

-- name: missing, null, not a string, ill-formed
SELECT workflow.create_workflow('{"chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": null, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": 42, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": ["def_x"], "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def x", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def/x", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "déf", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x\n", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow(jsonb_build_object('name', repeat('x', 129),
       'chain', '[{"name": "a", "sql": "select 1"}]'::jsonb));
\echo :LAST_ERROR_SQLSTATE

-- chain: missing, null, empty, not an array, too long
SELECT workflow.create_workflow('{"name": "def_x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": {"name": "a", "sql": "select 1"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": "select 1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "onerror": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "oncancel": "no"}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow(jsonb_build_object('name', 'def_x', 'chain',
       (SELECT jsonb_agg(jsonb_build_object('name', 't' || i, 'sql', 'select 1'))
          FROM generate_series(1, 1001) i)));
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: tasks
-------------------------------------------------------------------------------

-- not an object
SELECT workflow.create_workflow('{"name": "def_x", "chain": ["select 1"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}, null]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "onerror": [[]]}');
\echo :LAST_ERROR_SQLSTATE
-- unknown field, named with its position
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}, {"name": "b", "sql": "select 1", "retries": 3}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "oncancel": [{"name": "c", "sql": "select 1", "Sql": "x"}]}');
\echo :LAST_ERROR_SQLSTATE
-- task name: missing, null, not a string, ill-formed
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": null, "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": 1, "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a b", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "description": false, "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
-- duplicate task names, within a chain and across chains
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}, {"name": "a", "sql": "select 2"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "onerror": [{"name": "a", "sql": "select 2"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "onerror": [{"name": "b", "sql": "select 2"}], "oncancel": [{"name": "b", "task_type": "t"}]}');
\echo :LAST_ERROR_SQLSTATE
-- exactly one of sql, task_type, wait
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "task_type": "t"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "wait": "signal"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": "t", "wait": "1 s"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "task_type": "t", "wait": "1 s"}]}');
\echo :LAST_ERROR_SQLSTATE
-- task_type: ill-typed or ill-formed
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": null}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": ""}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": "pay ment"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": 3}]}');
\echo :LAST_ERROR_SQLSTATE

-- sql: empty, blank, null, not a string, no statement
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": ""}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": " \n\t "}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": null}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": ["select 1"]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": ";"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "-- nothing"}]}');
\echo :LAST_ERROR_SQLSTATE

-- SQL syntax errors are found at definition time; the error shows the task
-- body with the cursor on the error
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "selec 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}, {"name": "b", "sql": "select 1 from"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "onerror": [{"name": "b", "sql": "select 1;\nupdate t set x = where y"}]}');
\echo :LAST_ERROR_SQLSTATE
-- ... and the error context names the field (shown here through a helper,
-- as the context lines of the PL/pgSQL functions are not shown)
CREATE FUNCTION pg_temp.definition_error(definition jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    ctx text;
BEGIN
    PERFORM workflow.create_workflow(definition);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            ctx = PG_EXCEPTION_CONTEXT;
    RETURN format('%s: %s (%s)', state, msg, split_part(ctx, E'\n', 1));
END
$$;
SELECT pg_temp.definition_error('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1"}], "oncancel": [{"name": "b", "sql": "select 1"}, {"name": "c", "sql": "selec 1"}]}');
SELECT pg_temp.definition_error('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "fallback": "selec 2"}]}');
-- nothing was stored by any of the failed calls
SELECT count(*) FROM workflow.workflows WHERE name = 'def_x';

-- transaction control is refused: a task runs in the transaction that
-- records its result
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "COMMIT"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1; rollback"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "savepoint s1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "release savepoint s1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "begin; select 1; end"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "prepare transaction ''x''"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "fallback": "rollback"}]}');
\echo :LAST_ERROR_SQLSTATE

-- fallback: syntax error, empty, not a string, on a wait task
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "fallback": "selec 2"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": "t", "fallback": ""}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": "t", "fallback": true}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": "signal", "fallback": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": "5 min", "fallback": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE

-- wait: neither "signal" nor an interval
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": null}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": "forever"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": true}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": "-1 min"}]}');
\echo :LAST_ERROR_SQLSTATE

-- attempts: 1 to 1000, whole numbers
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "attempts": 0}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "attempts": -1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "attempts": 1.5}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "attempts": "3"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "attempts": 1001}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "attempts": 1e10}]}');
\echo :LAST_ERROR_SQLSTATE
-- a whole number written with a fraction or an exponent is a whole number
SELECT workflow.create_workflow('{"name": "def_num", "max_attempts": 2.0, "chain": [{"name": "a", "sql": "select 1", "attempts": 1e2}]}');
SELECT w.max_attempts, s.attempts
  FROM workflow.workflows w JOIN workflow.tasks s ON s.workflow_id = w.id
 WHERE w.name = 'def_num';

-- backoff
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "backoff": "random"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "backoff": "Fixed"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "backoff": 2}]}');
\echo :LAST_ERROR_SQLSTATE

-- intervals of tasks: negative, malformed, out of range, timeout 0
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "delay": "-1 s"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "delay": -5}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "max_delay": "soon"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "max_delay": {"s": 1}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "delay": 4e9}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "delay": "1000000000 years"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "timeout": "1 mon -40 days"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1", "timeout": 0}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": "t", "timeout": "0 s"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "task_type": "t", "timeout": "-30 s"}]}');
\echo :LAST_ERROR_SQLSTATE
-- a number of seconds too small for a double is not a crash of the interval
-- cast: it is rounded to microseconds, i.e. no delay
BEGIN;
SELECT workflow.create_workflow('{"name": "def_tiny", "chain": [{"name": "a", "sql": "select 1", "delay": 1e-400}]}');
SELECT delay FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id WHERE w.name = 'def_tiny';
ROLLBACK;

-- workflow-level fields
SELECT workflow.create_workflow('{"name": "def_x", "timeout": "-1 hour", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "timeout": "an hour", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "timeout": 4e9, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
-- every interval is at most 100 years, so that now() + it never overflows
SELECT workflow.create_workflow('{"name": "def_x", "timeout": "1000000 years", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "wait": "100 years 1 day"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "initial_delay": "296516 years 8 mons", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "initial_delay": true, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "max_delay": "-1 s", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "max_attempts": 0, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "max_attempts": "2", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "on_stale": "ignore", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "on_stale": "RETRY", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "on_stale": 1, "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "search_path": ["app"], "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "search_path": "\"app", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "search_path": "app,,public", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
-- validating the search_path does not change the caller's
SHOW search_path;
-- it is parsed, never applied, and stored in canonical form
BEGIN;
SELECT workflow.create_workflow('{"name": "def_sp", "search_path": "App,  \"My Schema\",pg_catalog", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT search_path FROM workflow.workflows WHERE name = 'def_sp';
ROLLBACK;
SHOW search_path;

-- COPY from or to the client cannot work in a background worker
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "COPY pg_class TO STDOUT"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "def_x", "chain": [{"name": "a", "sql": "select 1; COPY t FROM STDIN"}]}');
\echo :LAST_ERROR_SQLSTATE

-- backoffs saturate at max_delay, or at 100 years, never overflow
SELECT workflow._backoff('exponential', interval '100 years', NULL, 1000) AS exp_cap,
       workflow._backoff('linear', interval '90 years', NULL, 2147483647) AS lin_cap,
       workflow._backoff('exponential', interval '1 s', interval '1 min', 1000) AS max_delay,
       workflow._backoff('exponential', interval '1 s', NULL, 4) AS fourth,
       workflow._backoff('linear', interval '2 s', NULL, 3) AS third,
       workflow._backoff('fixed', interval '5 s', NULL, 7) AS fixed;

-- oversized definition
SET workflow.max_payload_size = '1kB';
SELECT workflow.create_workflow(jsonb_build_object('name', 'def_x', 'description', repeat('x', 2000),
       'chain', '[{"name": "a", "sql": "select 1"}]'::jsonb));
\echo :LAST_ERROR_SQLSTATE
-- just under the limit is fine
SELECT workflow.create_workflow(jsonb_build_object('name', 'def_small', 'description', repeat('x', 900),
       'chain', '[{"name": "a", "sql": "select 1"}]'::jsonb));
RESET workflow.max_payload_size;
SHOW workflow.max_payload_size;

-- nothing was stored by any of the failed calls
SELECT count(*) FROM workflow.workflows WHERE name = 'def_x';

-------------------------------------------------------------------------------
-- drop_workflow
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow('def_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.drop_workflow(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.drop_workflow('def_ver', force => NULL);
\echo :LAST_ERROR_SQLSTATE
-- refused while jobs are live (def_ver has two queued jobs)
SELECT workflow.drop_workflow('def_ver');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.workflows WHERE name = 'def_ver';
-- force drops every version with its jobs
SELECT workflow.drop_workflow('def_ver', force => true);
SELECT count(*) FROM workflow.workflows WHERE name = 'def_ver';
SELECT count(*) FROM workflow.jobs WHERE workflow = 'def_ver';
SELECT count(*) FROM workflow.jobs WHERE id IN (:latest, :first);
-- a dropped workflow is gone for create_job
SELECT workflow.create_job('def_ver');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('def_ver', version => 1);
\echo :LAST_ERROR_SQLSTATE
-- ... and its name can be used again, from version 1
SELECT workflow.create_workflow('{"name": "def_ver", "chain": [{"name": "again", "sql": "select 1"}]}');

-- a workflow whose jobs are all finished is dropped without force, with
-- its finished jobs
SELECT workflow.create_job('def_min') AS done \gset
SELECT workflow.cancel_job(:done);
SELECT workflow.drop_workflow('def_min');
SELECT count(*) FROM workflow.jobs WHERE id = :done;

-- the names are case-sensitive
SELECT workflow.drop_workflow('DEF_FULL');
\echo :LAST_ERROR_SQLSTATE

-- clean up
SELECT workflow.drop_workflow(name)
  FROM (SELECT DISTINCT name FROM workflow.workflows
         WHERE name LIKE 'def\_%' OR name LIKE 'Def.%') w
 ORDER BY name;
SELECT count(*) FROM workflow.workflows WHERE name LIKE 'def\_%' OR name LIKE 'Def.%';
-- no step is left without its workflow
SELECT count(*) FROM workflow.tasks s
 WHERE NOT EXISTS (SELECT 1 FROM workflow.workflows w WHERE w.id = s.workflow_id);
