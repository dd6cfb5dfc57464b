/* Update of the workflow extension from 1.0 to 1.1: the schema changes
 * only.  make builds workflow--1.0--1.1.sql from this file followed by
 * every function, view and grant of 1.1 (src/sql/[1-9]*.sql, all of them
 * CREATE OR REPLACE or repeatable): see src/sql/README.md.
 *
 * 1.1 is the security release: runner ids and target locks belong to a
 * role, idempotency keys are each role's own (and hold while their job
 * exists), and leases are random
 * (workflow._new_lease()) instead of numbers from workflow.lease_seq.
 *
 * The result must equal a fresh CREATE EXTENSION workflow VERSION '1.1'
 * (test/t/170_upgrade.pl compares pg_dump of both).
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION workflow UPDATE TO '1.1'" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

-- The schema must still be a superuser's: this script replaces SECURITY
-- DEFINER functions in it, and the owner of the schema could swap objects
-- under them (the same check as at CREATE EXTENSION).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                 JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                WHERE n.nspname = 'workflow' AND NOT r.rolsuper) THEN
        RAISE EXCEPTION 'schema "workflow" is owned by a role that is not a superuser'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'ALTER SCHEMA workflow OWNER TO a superuser, then run ALTER EXTENSION workflow UPDATE again.';
    END IF;
END
$$;

-------------------------------------------------------------------------------
-- Functions whose signature changed or that are gone: CREATE OR REPLACE
-- cannot change an argument list, so the old ones are dropped here and the
-- new ones created by the function sources that follow.
-------------------------------------------------------------------------------

DROP FUNCTION workflow.create_job(text, jsonb, text, timestamptz, integer, text, integer, text);  -- queue
DROP FUNCTION workflow._create_job(text, jsonb, text, timestamptz, integer, text, integer, text, oid);  -- queue
DROP FUNCTION workflow._check_external_worker(text);           -- (text, oid)
DROP FUNCTION workflow._complete_task(bigint, bigint, jsonb);  -- _complete_task_general; _complete_task(..., oid) is C
DROP FUNCTION workflow._leased_job(bigint, bigint, text);      -- (..., oid)
DROP FUNCTION workflow._release_target(workflow.jobs);         -- (regrole, text, bigint)
DROP FUNCTION workflow._runner_record(bigint, bigint, text, jsonb, jsonb, timestamptz, interval, jsonb[]);  -- p_outcome workflow.outcome
DROP FUNCTION workflow._runner_claim(text, integer);           -- returns the runner's columns
DROP FUNCTION workflow._runner_seen(text, text);               -- (text, oid)
DROP FUNCTION workflow._sweep(text, interval, integer);        -- (..., bigint[], interval)
DROP FUNCTION workflow._target_free(bigint, text, integer, timestamptz, timestamptz);  -- (..., regrole, ...)
DROP FUNCTION workflow._touch_worker(text);                    -- (text, oid)
DROP FUNCTION workflow._wake_at_commit(text, integer);          -- returns integer
DROP FUNCTION workflow._heartbeat(text[], integer[], boolean[]);  -- _in_server_heartbeat
DROP FUNCTION workflow._runner_steal(text, integer, bigint[], interval, text[], timestamptz[]);  -- _runner_takeover
DROP FUNCTION workflow._compile_chain(jsonb, workflow.phase, boolean);  -- (jsonb, phase, text, text, integer), and _compile_phase
-- "task" for a task of a chain everywhere: the table workflow.steps is
-- workflow.tasks, and the functions of the state machine are named after it
DROP FUNCTION workflow._step(workflow.jobs);                    -- _task_of
DROP FUNCTION workflow._current_step(workflow.jobs);            -- _current_task
DROP FUNCTION workflow._enqueue_step(workflow.jobs, workflow.phase, integer, integer, timestamptz, boolean);  -- _enqueue_task
DROP FUNCTION workflow._step_succeeded(workflow.jobs, jsonb, timestamptz, boolean);  -- _task_succeeded
DROP FUNCTION workflow._step_failed(workflow.jobs, jsonb, timestamptz, boolean);     -- _task_failed
ALTER TABLE workflow.steps RENAME TO tasks;
-- its constraints (and the primary key's index) as a fresh install names
-- them: steps_pkey, steps_kind_check, ..., and from PostgreSQL 18 on the
-- named NOT NULL constraints steps_<column>_not_null
DO $$
DECLARE
    c   name;
BEGIN
    FOR c IN SELECT k.conname FROM pg_catalog.pg_constraint k
              WHERE k.conrelid = 'workflow.tasks'::regclass AND k.conname LIKE 'steps\_%'
    LOOP
        EXECUTE format('ALTER TABLE workflow.tasks RENAME CONSTRAINT %I TO %I',
                       c, 'tasks' || pg_catalog.substr(c, 6));
    END LOOP;
END
$$;

-------------------------------------------------------------------------------
-- The outcome of a task a runner ran is a type (as in 01_types.sql); the
-- runners of 1.1 pass its label to _runner_record, as text until this
-- update (src/runner.c).
-------------------------------------------------------------------------------

CREATE TYPE workflow.outcome AS ENUM
    ('succeeded', 'failed', 'fatal', 'requeue', 'wait', 'wait_step', 'timeout', 'release', 'return');
COMMENT ON TYPE workflow.outcome IS
    'internal: the outcome of a task an in-server runner ran, recorded by _runner_record (src/README.md, "The job state machine")';
REVOKE ALL ON TYPE workflow.outcome FROM PUBLIC;

-------------------------------------------------------------------------------
-- Leases are random (workflow._new_lease()): the sequence is gone.  The
-- leases of running jobs stay what they are: a report needs the lease and,
-- from 1.1 on, the role that owns the runner id that claimed the task.
-------------------------------------------------------------------------------

ALTER EXTENSION workflow DROP SEQUENCE workflow.lease_seq;   -- also leaves extconfig
DROP SEQUENCE workflow.lease_seq;

-------------------------------------------------------------------------------
-- Jobs: lock by target and idempotency keys per creating role
-------------------------------------------------------------------------------

DROP INDEX workflow.jobs_queued_target;
-- claim order within a target of a role (lock by target)
CREATE INDEX jobs_queued_target ON workflow.jobs (target, created_by, priority DESC, run_at, id)
    WHERE execution = 'queued' AND target IS NOT NULL;

-- An idempotency key is one job's for as long as the job exists, per
-- creating role across workflows (1.0: per workflow, while the job was
-- live).  A 1.0 database can hold a key of one role on several jobs: on
-- finished ones, and on live jobs of different workflows.  The key stays
-- on one of them, the newest live job, else the newest job; it is
-- cleared on the others, which keep their state and run on without a key.
DROP INDEX workflow.jobs_idempotency;
UPDATE workflow.jobs j
   SET idempotency_key = NULL
  FROM (SELECT d.id,
               pg_catalog.row_number() OVER (PARTITION BY d.created_by, d.idempotency_key
                                             ORDER BY d.execution IN ('queued', 'running', 'waiting') DESC,
                                                      d.id DESC) AS rank
          FROM workflow.jobs d
         WHERE d.idempotency_key IS NOT NULL) k
 WHERE j.id = k.id AND k.rank > 1;
-- an idempotency key is one job's, in any state, until the job is pruned;
-- keys are each role's own, so no role can take or pre-empt another
-- role's key (only root jobs have keys)
CREATE UNIQUE INDEX jobs_idempotency ON workflow.jobs (created_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-------------------------------------------------------------------------------
-- Target locks belong to the jobs' creator: (owner, target) is the key.
-- Rebuilt rather than altered, so that its columns are in 1.1's order; a
-- lock takes its job's creator.  A lock whose job is gone or finished
-- (none should exist) would hold its target forever: it is not kept.
-------------------------------------------------------------------------------

ALTER EXTENSION workflow DROP TABLE workflow.target_locks;   -- also leaves extconfig
ALTER TABLE workflow.target_locks RENAME TO target_locks_1_0;
ALTER INDEX workflow.target_locks_pkey RENAME TO target_locks_1_0_pkey;
-- From PostgreSQL 18 on, NOT NULL constraints are catalogued under names
-- made from the table's (target_locks_target_not_null, ...), which the
-- renamed table keeps: free them for the new table's.
ALTER TABLE workflow.target_locks_1_0
    DROP CONSTRAINT target_locks_1_0_pkey,
    ALTER target DROP NOT NULL, ALTER job_id DROP NOT NULL, ALTER locked_at DROP NOT NULL;

CREATE TABLE workflow.target_locks (
    owner           regrole NOT NULL,
    target          text NOT NULL,
    job_id          bigint NOT NULL,
    locked_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (owner, target)
);
COMMENT ON TABLE workflow.target_locks IS
    'targets held by in-progress jobs, per creating role; jobs of a held target wait in the queue';
SELECT pg_catalog.pg_extension_config_dump('workflow.target_locks', '');

INSERT INTO workflow.target_locks (owner, target, job_id, locked_at)
SELECT j.created_by, l.target, l.job_id, l.locked_at
  FROM workflow.target_locks_1_0 l
  JOIN workflow.jobs j ON j.id = l.job_id
 WHERE j.execution IN ('queued', 'running', 'waiting');

DROP TABLE workflow.target_locks_1_0;

-- Readable with row-level security (as in 03_row_security.sql): a role
-- sees the targets its jobs hold, administrators see all.
ALTER TABLE workflow.target_locks ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_locks_own ON workflow.target_locks FOR SELECT
    USING (owner = (SELECT pg_catalog.to_regrole(pg_catalog.quote_ident(current_user)))
           OR pg_catalog.pg_has_role(current_user, 'workflow_admin', 'MEMBER'));
COMMENT ON POLICY target_locks_own ON workflow.target_locks IS
    'a role sees the targets its jobs hold; members of workflow_admin see all';

-------------------------------------------------------------------------------
-- Runner ids belong to a role (workflow.runners.owner, NOT NULL)
--
-- 1.0 did not record which role registered an id.  The rows of the
-- in-server workers (kinds runner and sweeper) are the extension owner's,
-- as in 1.1.  An external worker's id goes to the login role of the
-- session that registered it when that session is still connected (the
-- same process: its pid, started no later than the registration, the
-- test of workflow.inactive_runners) and that role is a member of
-- workflow_worker: such a worker goes on under its id, and reports the
-- tasks it holds.  Every other external id is the extension owner's: only
-- administrators (members of workflow_admin) may use it or report its
-- tasks; its worker registers a new id and polls again, and the tasks it
-- held are handed out again once their leases expire (or an administrator
-- completes, fails or requeues them).
-------------------------------------------------------------------------------

ALTER TABLE workflow.runners ADD COLUMN owner regrole;

UPDATE workflow.runners r
   SET owner = coalesce(
           (SELECT a.usesysid::regrole
              FROM pg_catalog.pg_stat_activity a
             WHERE r.kind = 'external'
               AND a.pid = r.pid
               AND a.backend_start <= r.started_at
               AND a.datid = (SELECT d.oid FROM pg_catalog.pg_database d
                               WHERE d.datname = pg_catalog.current_database())
               AND pg_catalog.pg_has_role(a.usesysid, 'workflow_worker', 'MEMBER')),
           (SELECT e.extowner FROM pg_catalog.pg_extension e
             WHERE e.extname = 'workflow')::regrole);

ALTER TABLE workflow.runners ALTER COLUMN owner SET NOT NULL;
-- whether a runner is idle is derived from the jobs it holds
-- (workflow.runner_status), not stored
ALTER TABLE workflow.runners DROP COLUMN idle;
COMMENT ON COLUMN workflow.runners.owner IS
    'the role that registered the runner id (the extension owner for the in-server workers): only it, or a member of workflow_admin, may use the id';

-- pg_dump keeps the ids external workers registered, with their owners (as
-- in 02_tables.sql)
SELECT pg_catalog.pg_extension_config_dump('workflow.runners', 'WHERE kind = ''external''');

-------------------------------------------------------------------------------
-- Control flow: parallel branches, switches, sub-workflows, foreach,
-- signals (src/sql/35_control_flow.sql)
-------------------------------------------------------------------------------

ALTER TABLE workflow.workflows ADD COLUMN part_of bigint;
ALTER TABLE workflow.tasks ADD COLUMN spawn jsonb;
ALTER TABLE workflow.tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE workflow.tasks ADD CONSTRAINT tasks_kind_check
    CHECK (kind IN ('sql', 'external', 'wait', 'parallel', 'switch', 'workflow', 'foreach'));

ALTER TABLE workflow.jobs
    ADD COLUMN parent_id bigint,
    ADD COLUMN root_id bigint,
    ADD COLUMN parent_task text,
    ADD COLUMN parent_lease bigint,
    ADD COLUMN branch text,
    ADD COLUMN child_index integer,
    ADD COLUMN item jsonb,
    ADD COLUMN waiting_for text,
    ADD COLUMN signal_key text;
-- every job of 1.0 is the root of its own tree
UPDATE workflow.jobs SET root_id = id;
-- retention prunes roots, with their trees, oldest first per end state
DROP INDEX workflow.jobs_finished;
CREATE INDEX jobs_finished ON workflow.jobs (execution, finished_at)
    WHERE finished_at IS NOT NULL AND parent_id IS NULL;
CREATE INDEX jobs_children ON workflow.jobs (parent_id, parent_task, child_index)
    WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_tree ON workflow.jobs (root_id)
    WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_signal ON workflow.jobs (signal_key)
    WHERE execution = 'waiting' AND signal_key IS NOT NULL;

CREATE TABLE workflow.joins (
    job_id          bigint PRIMARY KEY,
    lease           bigint NOT NULL,
    task            text NOT NULL,
    total           integer NOT NULL,
    pending         integer NOT NULL,
    failed          integer NOT NULL DEFAULT 0,
    next_child      integer NOT NULL,
    fail_fast       boolean NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
) WITH (fillfactor = 50);
COMMENT ON TABLE workflow.joins IS
    'jobs waiting at a control-flow entry for their children, and the count of children not ended';

CREATE TABLE workflow.signals (
    owner           regrole NOT NULL,
    key             text NOT NULL,
    payload         jsonb,
    sent_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (owner, key)
);
COMMENT ON TABLE workflow.signals IS
    'signals sent before any job waited on their key, kept for workflow.signal_retention';
SELECT pg_catalog.pg_extension_config_dump('workflow.joins', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.signals', '');

-------------------------------------------------------------------------------
-- Queues with limits (src/sql/42_queues.sql)
-------------------------------------------------------------------------------

ALTER TABLE workflow.workflows
    ADD COLUMN queue text NOT NULL DEFAULT 'default',
    ADD COLUMN concurrency_key text;
ALTER TABLE workflow.jobs
    ADD COLUMN queue text NOT NULL DEFAULT 'default',
    ADD COLUMN concurrency_key text;
-- the claim scans each queue in claim order
DROP INDEX workflow.jobs_runnable_sql;
DROP INDEX workflow.jobs_runnable_external;
DROP INDEX workflow.jobs_runnable_domain;
CREATE INDEX jobs_runnable_sql ON workflow.jobs (queue, priority DESC, run_at, id)
    WHERE execution = 'queued' AND task_type IS NULL;
CREATE INDEX jobs_runnable_external ON workflow.jobs (task_type, queue, priority DESC, run_at, id)
    WHERE execution = 'queued' AND task_type IS NOT NULL AND domain IS NULL;
CREATE INDEX jobs_runnable_domain ON workflow.jobs (task_type, domain, queue, priority DESC, run_at, id)
    WHERE execution = 'queued' AND task_type IS NOT NULL AND domain IS NOT NULL;

CREATE TABLE workflow.queues (
    name            text PRIMARY KEY,
    concurrency     integer,
    rate_limit      integer,
    rate_interval   interval NOT NULL DEFAULT '1 second',
    key_concurrency integer,
    tokens          double precision,
    tokens_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (concurrency > 0 AND concurrency <= 1000000),
    CHECK (rate_limit > 0 AND rate_limit <= 1000000),
    CHECK (rate_interval >= interval '1 millisecond' AND rate_interval <= interval '1 day'),
    CHECK (key_concurrency > 0 AND key_concurrency <= 1000000)
);
COMMENT ON TABLE workflow.queues IS
    'named queues and their limits (concurrency, rate, per-key concurrency); a queue without a row has none';
SELECT pg_catalog.pg_extension_config_dump('workflow.queues', '');
