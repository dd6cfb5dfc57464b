--
-- The library is preloaded; its configuration variables, their defaults and
-- contexts; the reserved "workflow" prefix; nothing is granted to PUBLIC.
--
-- test/conf/regress.conf sets workflow.runners = 0, workflow.enabled = off
-- and workflow.database = 'contrib_regression'; everything else is at its
-- default.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 2001 whatever ran before
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 2001, false) AS first_job_id;

SHOW shared_preload_libraries;

-------------------------------------------------------------------------------
-- Configuration variables
-------------------------------------------------------------------------------

SHOW workflow.database;
SHOW workflow.runners;
SHOW workflow.run_interval;
SHOW workflow.activity_interval;
SHOW workflow.stale_after;
SHOW workflow.stale_job_action;
SHOW workflow.retention;
SHOW workflow.enabled;
SHOW workflow.max_payload_size;

-- built-in defaults, units, ranges and who may change them
SELECT name, boot_val, unit, vartype, context, min_val, max_val, enumvals
  FROM pg_settings WHERE name LIKE 'workflow.%' ORDER BY name;

-- the prefix is reserved: a misspelt setting is an error, not a new
-- placeholder variable
SET workflow.nonexistent = 1;
\echo :LAST_ERROR_SQLSTATE
SET workflow.runner = 4;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('workflow.nonexistent', '1', false);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pg_settings WHERE name = 'workflow.nonexistent';

-- the server-wide settings are changed in postgresql.conf and reloaded, not
-- per session
SET workflow.stale_after = '1s';
\echo :LAST_ERROR_SQLSTATE
SET workflow.enabled = on;
\echo :LAST_ERROR_SQLSTATE
SET workflow.runners = 4;
\echo :LAST_ERROR_SQLSTATE
SET workflow.database = 'postgres';
\echo :LAST_ERROR_SQLSTATE

-- the payload limit is per session (superuser), with bounds and a unit
SET workflow.max_payload_size = '64kB';
SHOW workflow.max_payload_size;
SET workflow.max_payload_size = 2048;
SHOW workflow.max_payload_size;
-- (out of range: only the SQLSTATE, as the message's format of the bounds
-- differs between PostgreSQL majors)
\set VERBOSITY sqlstate
SET workflow.max_payload_size = 0;
\echo :LAST_ERROR_SQLSTATE
SET workflow.max_payload_size = '2GB';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SET workflow.max_payload_size = 'big';
\echo :LAST_ERROR_SQLSTATE
RESET workflow.max_payload_size;
SHOW workflow.max_payload_size;

-------------------------------------------------------------------------------
-- Nothing is granted to PUBLIC
-------------------------------------------------------------------------------

SELECT count(*) AS public_grants
  FROM (SELECT c.relacl AS acl FROM pg_class c WHERE c.relnamespace = 'workflow'::regnamespace
        UNION ALL
        SELECT p.proacl FROM pg_proc p WHERE p.pronamespace = 'workflow'::regnamespace
        UNION ALL
        SELECT n.nspacl FROM pg_namespace n WHERE n.nspname = 'workflow') o,
       aclexplode(o.acl) a
 WHERE a.grantee = 0;
-- every function of the schema has an explicit ACL (no default EXECUTE for
-- PUBLIC)
SELECT count(*) AS functions_with_default_acl
  FROM pg_proc p WHERE p.pronamespace = 'workflow'::regnamespace AND p.proacl IS NULL;

CREATE ROLE regress_workflow_nobody;
SELECT count(*) FILTER (WHERE has_function_privilege('regress_workflow_nobody', p.oid, 'EXECUTE'))
         AS executable,
       count(*) > 0 AS has_functions
  FROM pg_proc p WHERE p.pronamespace = 'workflow'::regnamespace;
SELECT count(*) FILTER (WHERE has_table_privilege('regress_workflow_nobody', c.oid,
                        'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'))
         AS accessible
  FROM pg_class c WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'v');
SELECT has_schema_privilege('regress_workflow_nobody', 'workflow', 'USAGE') AS schema_usage;

-- a job and a workflow to try to reach
SELECT workflow.create_workflow('{"name": "gucs_wf", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_job('gucs_wf') AS job \gset

SET ROLE regress_workflow_nobody;
SELECT workflow.create_workflow('{"name": "gucs_evil", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('gucs_wf');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.jobs;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.workflows;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.job_summary;
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.get_job(:job);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.cancel_job(:job);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.next_jobs(0, 10);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner('regress-evil');
\echo :LAST_ERROR_SQLSTATE
-- nor can it change the payload limit
SET workflow.max_payload_size = '1MB';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- with USAGE on the schema only, the functions and tables are still refused
GRANT USAGE ON SCHEMA workflow TO regress_workflow_nobody;
SET ROLE regress_workflow_nobody;
SELECT workflow.create_workflow('{"name": "gucs_evil", "chain": [{"name": "a", "sql": "select 1"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('gucs_wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.get_job(:job);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.run_job(:job, 'regress-evil');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.jobs;
\echo :LAST_ERROR_SQLSTATE
UPDATE workflow.jobs SET execution = 'succeeded';
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.runner_status;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE USAGE ON SCHEMA workflow FROM regress_workflow_nobody;

-- nothing was changed by the refused calls
SELECT execution FROM workflow.jobs WHERE id = :job;
SELECT count(*) FROM workflow.workflows WHERE name = 'gucs_evil';
SELECT count(*) FROM workflow.runners WHERE id = 'regress-evil';

-- clean up
DROP ROLE regress_workflow_nobody;
SELECT workflow.drop_workflow('gucs_wf', force => true);
