-------------------------------------------------------------------------------
-- C support functions (src/)
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION workflow._check_sql(body text, field text)
RETURNS void
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'workflow_check_sql';
COMMENT ON FUNCTION workflow._check_sql(text, text) IS
    'internal: parse (not run) the SQL of a task and raise a syntax error naming the field';

CREATE OR REPLACE FUNCTION workflow._check_query(body text, field text)
RETURNS text
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'workflow_check_query';
COMMENT ON FUNCTION workflow._check_query(text, text) IS
    'internal: parse (not run) the query of a control-flow expression, which must be one query returning rows; returns it without a trailing semicolon';

CREATE OR REPLACE FUNCTION workflow._check_search_path(value text)
RETURNS text
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'workflow_check_search_path';
COMMENT ON FUNCTION workflow._check_search_path(text) IS
    'internal: parse (never apply) a search_path: the list in canonical form, or NULL when it is not a list of schema names';

CREATE OR REPLACE FUNCTION workflow._check_payload(value jsonb, what text)
RETURNS void
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'workflow_check_payload';
COMMENT ON FUNCTION workflow._check_payload(jsonb, text) IS
    'internal: refuse NULL and payloads larger than workflow.max_payload_size';

CREATE OR REPLACE FUNCTION workflow._check_job_args(params jsonb, target text, idempotency_key text, element integer)
RETURNS boolean
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'workflow_check_job_args';
COMMENT ON FUNCTION workflow._check_job_args(jsonb, text, text, integer) IS
    'internal: the checks of one job''s params, target and idempotency key (create_job, and each element of create_jobs, named in the error); returns true';

CREATE OR REPLACE FUNCTION workflow._wake_at_commit(queue text, count integer DEFAULT 1)
RETURNS integer
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_wake_at_commit';
COMMENT ON FUNCTION workflow._wake_at_commit(text, integer) IS
    'internal: wake count idle runners (queue NULL) or long-polling workers of a task type when this transaction commits; returns count';

CREATE OR REPLACE FUNCTION workflow._crash_held()
RETURNS bigint[]
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'workflow_crash_held';
COMMENT ON FUNCTION workflow._crash_held() IS
    'internal: the jobs of this database that a runner was executing when the server last crashed and that the sweeper has not settled yet; runners do not claim them (src/crashrecord.c)';

CREATE OR REPLACE FUNCTION workflow._crash_records(OUT job_id bigint, OUT lease bigint, OUT runner_id text,
                                                   OUT started_at timestamptz, OUT phase text, OUT step integer,
                                                   OUT attempt integer, OUT task_attempt integer)
RETURNS SETOF record
LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 2
AS 'MODULE_PATHNAME', 'workflow_crash_records';
COMMENT ON FUNCTION workflow._crash_records() IS
    'internal: the tasks runners of this database were executing when the server last crashed, not settled yet (src/crashrecord.c)';

CREATE OR REPLACE FUNCTION workflow._crash_settled(job_id bigint)
RETURNS void
LANGUAGE c STRICT VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_crash_settled';
COMMENT ON FUNCTION workflow._crash_settled(bigint) IS
    'internal: the crash record of this job is settled when this transaction commits (src/crashrecord.c)';

CREATE OR REPLACE FUNCTION workflow._new_lease()
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_new_lease';
COMMENT ON FUNCTION workflow._new_lease() IS
    'internal: a new lease (claim token): a random positive bigint from pg_strong_random, not guessable from other leases';

CREATE OR REPLACE FUNCTION workflow._in_server_worker()
RETURNS text
LANGUAGE c STABLE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_in_server_worker';
COMMENT ON FUNCTION workflow._in_server_worker() IS
    'internal: the runner id of the in-server worker this process is (runner-N, sweeper), NULL for every other backend';

CREATE OR REPLACE FUNCTION workflow._warn_unserved()
RETURNS void
LANGUAGE c PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'workflow_warn_unserved';
COMMENT ON FUNCTION workflow._warn_unserved() IS
    'internal: warn (once per transaction) when no worker of this server serves the current database (workflow.database), whose jobs would then stay queued';

CREATE OR REPLACE FUNCTION workflow._concurrency_key(query text, context jsonb, creator oid,
                                                   search_path text, workflow text)
RETURNS text
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'workflow_concurrency_key';
COMMENT ON FUNCTION workflow._concurrency_key(text, jsonb, oid, text, text) IS
    'internal: a new job''s concurrency key: the definition''s query, run read-only as the job''s creator (src/concurrency_key.c)';
