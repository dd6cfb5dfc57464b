--
-- Control-flow entries in definitions: parallel, switch, sub-workflow,
-- foreach and signal waits (what create_workflow compiles, every invalid
-- case), the hidden workflows of their chains, workflow.signal's arguments
-- and drop_workflow of a workflow with parts.
--
-- Every workflow created here is named cf_*; the file drops them all at
-- the end.  Job ids are never printed.
--
\set SHOW_CONTEXT never

-- the workflow sub-workflow entries below name
SELECT workflow.create_workflow('{"name": "cf_child", "chain": [{"name": "c", "sql": "select $1 -> ''job'' -> ''params''"}]}');

-------------------------------------------------------------------------------
-- Valid definitions: the compiled rows
-------------------------------------------------------------------------------

SELECT workflow.create_workflow($${
  "name": "cf_all",
  "chain": [
    {"name": "checks", "parallel": {
        "fraud": [{"name": "score", "sql": "select 1"}, {"name": "verdict", "task_type": "fraud.v1"}],
        "stock": [{"name": "reserve", "sql": "select 2"}]},
     "fail_fast": false, "attempts": 2},
    {"name": "route", "switch": "select $1 -> 'job' -> 'params' ->> 'size';",
     "cases": {"big": [{"name": "truck", "sql": "select 'truck'"}],
               "small": [{"name": "bike", "sql": "select 'bike'"}]},
     "default": [{"name": "walk", "sql": "select 'walk'"}]},
    {"name": "ship", "workflow": "cf_child", "version": 1,
     "params": "  select jsonb_build_object('n', 1)  "},
    {"name": "sub_default", "workflow": "cf_child"},
    {"name": "notify", "foreach": "select jsonb_array_elements($1 -> 'job' -> 'params' -> 'items')",
     "do": [{"name": "send", "sql": "select $1 -> 'item'"}], "concurrency": 2},
    {"name": "each_job", "foreach": "values ('{}'::jsonb)", "do": {"workflow": "cf_child"},
     "fail_fast": false},
    {"name": "approval", "wait": "signal", "key": "select 'order-' || ($1 -> 'job' ->> 'id')",
     "timeout": "1 day"},
    {"name": "plain", "wait": "signal"}
  ]
}$$);

-- the main chain: one row per entry, what each starts in "spawn"
SELECT s.position, s.name, s.kind, s.attempts, s.timeout, s.spawn
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'cf_all'
 ORDER BY s.phase, s.position;
-- the SQL of the control-flow expressions (a foreach list is collected
-- into one array; a trailing semicolon and blanks are dropped)
SELECT s.name, s.sql
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'cf_all' AND s.sql IS NOT NULL
 ORDER BY s.position;
-- each chain of an entry is a workflow of its own, part of the main one
SELECT w.name, w.version, p.name AS part_of, w.definition
  FROM workflow.workflows w JOIN workflow.workflows p ON p.id = w.part_of
 WHERE p.name = 'cf_all'
 ORDER BY w.name;
SELECT w.name, s.phase, s.position, s.name AS task, s.kind, s.sql, s.task_type
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name LIKE 'cf\_all/%'
 ORDER BY w.name, s.position;

-- nesting: a switch inside a parallel branch inside a foreach body
SELECT workflow.create_workflow($${
  "name": "cf_nest",
  "chain": [
    {"name": "outer", "foreach": "select 1", "do": [
      {"name": "mid", "parallel": {"a": [
        {"name": "inner", "switch": "select 'x'", "cases": {"x": [{"name": "leaf", "sql": "select 1"}]}}]}}]}
  ]
}$$);
SELECT w.name, s.position, s.name AS task, s.kind, s.spawn
  FROM workflow.tasks s JOIN workflow.workflows w ON w.id = s.workflow_id
 WHERE w.name = 'cf_nest' OR w.name LIKE 'cf\_nest/%'
 ORDER BY w.name, s.position;

-- a workflow may start a new job of itself (before it exists)
SELECT workflow.create_workflow('{"name": "cf_self", "chain": [{"name": "again", "workflow": "cf_self"}]}');
-- a new version stores new parts; the old version keeps its own
SELECT workflow.create_workflow('{"name": "cf_ver", "chain": [{"name": "p", "parallel": {"x": [{"name": "a", "sql": "select 1"}]}}]}');
SELECT workflow.create_workflow('{"name": "cf_ver", "chain": [{"name": "p", "parallel": {"x": [{"name": "b", "sql": "select 2"}]}}]}');
SELECT w.name, w.version, p.version AS part_of_version, s.name AS task
  FROM workflow.workflows w JOIN workflow.workflows p ON p.id = w.part_of
  JOIN workflow.tasks s ON s.workflow_id = w.id
 WHERE p.name = 'cf_ver'
 ORDER BY w.version;
-- the deepest nesting allowed: 8 levels
SELECT workflow.create_workflow(jsonb_build_object('name', 'cf_deep8', 'chain',
       (SELECT jsonb_build_array(jsonb_build_object('name', 'p1', 'parallel', jsonb_build_object('b', x)))
          FROM (SELECT '[{"name": "p2", "parallel": {"b": [{"name": "p3", "parallel": {"b": [{"name": "p4", "parallel": {"b": [{"name": "p5", "parallel": {"b": [{"name": "p6", "parallel": {"b": [{"name": "p7", "parallel": {"b": [{"name": "leaf", "sql": "select 1"}]}}]}}]}}]}}]}}]}}]'::jsonb) AS v(x))));
SELECT count(*) AS parts FROM workflow.workflows WHERE name LIKE 'cf\_deep8/%';

-------------------------------------------------------------------------------
-- Parts cannot be started directly
-------------------------------------------------------------------------------

SELECT workflow.create_job('cf_all/checks/fraud');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('cf_all/checks/fraud', version => 1);
\echo :LAST_ERROR_SQLSTATE
-- nor dropped on their own
SELECT workflow.drop_workflow('cf_all/checks/fraud');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: parallel
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": [[{"name": "a", "sql": "select 1"}]]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": "x"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": {"name": "x", "sql": "select 1"}}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": [{"name": "x", "sql": "select 1"}], "b": []}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a b": [{"name": "x", "sql": "select 1"}]}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"": [{"name": "x", "sql": "select 1"}]}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": [{"name": "x", "sql": "select 1"}]}, "fail_fast": "yes"}]}');
\echo :LAST_ERROR_SQLSTATE
-- an error inside a branch names its path
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"fraud": [{"name": "x", "sql": "select 1"}, {"name": "y", "sql": ""}]}}]}');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: switch
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "", "default": [{"name": "d", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": null, "default": [{"name": "d", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1; select 2", "default": [{"name": "d", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "insert into t values (1)", "default": [{"name": "d", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1 into x", "default": [{"name": "d", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "selec 1", "default": [{"name": "d", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1", "cases": [[{"name": "d", "sql": "select 1"}]]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1", "cases": {}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1", "cases": {"big": []}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1", "cases": {"big": [{"name": "t", "sql": "select 1"}]}, "default": [{"name": "d"}]}]}');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: sub-workflow
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_nope"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_child", "version": 9}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_child", "version": 0}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "no such name"}]}');
\echo :LAST_ERROR_SQLSTATE
-- a part is not a workflow a sub-workflow entry can start
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_all/checks/fraud"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_child", "params": "update t set x = 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_child", "params": {"n": 1}}]}');
\echo :LAST_ERROR_SQLSTATE
-- a new version of itself that does not exist yet
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_bad", "version": 1}]}');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: foreach
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": "cf_child"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": []}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": {"workflow": "cf_child", "params": "select 1"}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": {}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": {"workflow": "cf_nope"}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "x", "sql": "select 1"}], "concurrency": 0}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "x", "sql": "select 1"}], "concurrency": 100001}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "x", "sql": "select 1"}], "concurrency": 2.5}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "x", "sql": "select 1"}], "concurrency": "2"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "x", "sql": "select 1"}], "fail_fast": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "delete from t", "do": [{"name": "x", "sql": "select 1"}]}]}');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: signal waits
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "wait": "1 min", "key": "select ''k''"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "wait": "signal", "key": "select ''k"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "wait": "signal", "key": ""}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "wait": "signal", "key": 42}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "wait": "signal", "key": "select 1; select 2"}]}');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: fields of another kind, kinds together
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": [{"name": "x", "sql": "select 1"}]}, "fallback": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "t", "sql": "select 1", "cases": {}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "t", "task_type": "x", "concurrency": 2}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "wait": "signal", "params": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1", "default": [{"name": "d", "sql": "select 1"}], "fail_fast": true}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "w", "workflow": "cf_child", "do": []}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "x", "sql": "select 1"}], "key": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": [{"name": "x", "sql": "select 1"}]}, "bogus": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "x", "sql": "select 1", "switch": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "x", "parallel": {"a": [{"name": "y", "sql": "select 1"}]}, "foreach": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- Invalid definitions: names unique across branches, nesting depth
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": [{"name": "x", "sql": "select 1"}], "b": [{"name": "x", "sql": "select 2"}]}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "p", "parallel": {"a": [{"name": "p", "sql": "select 1"}]}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "s", "switch": "select 1", "cases": {"1": [{"name": "x", "sql": "select 1"}]}, "default": [{"name": "x", "sql": "select 2"}]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "cf_bad", "chain": [{"name": "f", "foreach": "select 1", "do": [{"name": "u", "sql": "select 1"}]}], "onerror": [{"name": "u", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
-- 9 levels
SELECT workflow.create_workflow(jsonb_build_object('name', 'cf_bad', 'chain',
       (SELECT jsonb_build_array(jsonb_build_object('name', 'p1', 'parallel', jsonb_build_object('b', x)))
          FROM (SELECT '[{"name": "p2", "parallel": {"b": [{"name": "p3", "parallel": {"b": [{"name": "p4", "parallel": {"b": [{"name": "p5", "parallel": {"b": [{"name": "p6", "parallel": {"b": [{"name": "p7", "parallel": {"b": [{"name": "p8", "parallel": {"b": [{"name": "leaf", "sql": "select 1"}]}}]}}]}}]}}]}}]}}]}}]'::jsonb) AS v(x))));
\echo :LAST_ERROR_SQLSTATE
-- nothing was stored by the refused definitions
SELECT count(*) FROM workflow.workflows WHERE name = 'cf_bad' OR name LIKE 'cf\_bad/%';

-------------------------------------------------------------------------------
-- workflow.signal: arguments, and a signal that resumes no job is kept
-------------------------------------------------------------------------------

SELECT workflow.signal(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.signal(NULL, '{"a": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.signal('');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.signal(repeat('k', 1001));
\echo :LAST_ERROR_SQLSTATE
-- 1000 characters is a valid key; no job waits: 0 resumed, the signal kept
SELECT workflow.signal(repeat('k', 1000));
SELECT workflow.signal('cf-order-1', '{"approved": true}');
SELECT owner = current_user::regrole AS mine, key, payload, sent_at > now() - interval '1 min' AS recent
  FROM workflow.signals WHERE key = 'cf-order-1';
-- one per role and key: the newest replaces it
SELECT workflow.signal('cf-order-1', '{"approved": false}');
SELECT count(*), min(payload::text) AS payload FROM workflow.signals WHERE key = 'cf-order-1';
-- no payload is a signal too
SELECT workflow.signal('cf-order-2');
SELECT key, payload FROM workflow.signals WHERE key = 'cf-order-2';
DELETE FROM workflow.signals WHERE key IN ('cf-order-1', 'cf-order-2', repeat('k', 1000));

-------------------------------------------------------------------------------
-- drop_workflow removes the parts with their main workflow
-------------------------------------------------------------------------------

SELECT count(*) AS parts FROM workflow.workflows WHERE name LIKE 'cf\_all/%';
SELECT workflow.drop_workflow('cf_all');
SELECT count(*) AS parts FROM workflow.workflows WHERE name LIKE 'cf\_all/%';
SELECT count(*) AS tasks FROM workflow.tasks s
 WHERE NOT EXISTS (SELECT 1 FROM workflow.workflows w WHERE w.id = s.workflow_id);
-- with every version's parts
SELECT workflow.drop_workflow('cf_ver');
SELECT count(*) FROM workflow.workflows WHERE name LIKE 'cf\_ver%';
-- a live job keeps the workflow unless forced
SELECT workflow.create_job('cf_nest') AS nest \gset
SELECT workflow.drop_workflow('cf_nest');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.drop_workflow('cf_nest', force => true);
SELECT count(*) FROM workflow.jobs WHERE id = :nest;
SELECT count(*) FROM workflow.workflows WHERE name LIKE 'cf\_nest%';

-- clean up
SELECT workflow.drop_workflow(name)
  FROM (SELECT DISTINCT name FROM workflow.workflows
         WHERE name LIKE 'cf\_%' AND part_of IS NULL) w
 ORDER BY name;
SELECT count(*) FROM workflow.workflows WHERE name LIKE 'cf\_%';
SELECT count(*) FROM workflow.tasks s
 WHERE NOT EXISTS (SELECT 1 FROM workflow.workflows w WHERE w.id = s.workflow_id);
