-- Privileges: nothing for PUBLIC; three roles to grant
--
--   workflow_user    define workflows, create jobs, and see, cancel, resume,
--                    retry the jobs one created
--   workflow_worker  the runner protocol and the external task protocol
--   workflow_admin   both, and every job of every role; pause task types;
--                    delete and redact finished jobs
--
-- Users have no privilege to write any table: every change goes through the
-- functions, which are SECURITY DEFINER with a pinned search_path (those
-- that act for a role learn its identity through src/api.c).  Reading is
-- granted with row-level security: a role sees the jobs it created (and
-- their task runs and info, and the targets they hold), administrators see
-- all.
-------------------------------------------------------------------------------

REVOKE ALL ON SCHEMA workflow FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA workflow FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA workflow FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA workflow FROM PUBLIC;
REVOKE ALL ON TYPE workflow.execution, workflow.phase, workflow.task FROM PUBLIC;
-- The row types of tables and views are types too, and USAGE on one would
-- let a role create objects that depend on it (a column or a function of
-- type workflow.jobs), which block changes of the table and DROP
-- EXTENSION.  They keep no privilege at all (not even their owner's, a
-- superuser who needs none) and leave no entry in pg_init_privs: pg_dump
-- never dumps the privileges of a row type, and warns "unsupported
-- pg_init_privs entry" at every dump for each such entry.  PostgreSQL 18
-- records no empty privilege list there; where one is recorded (15), the
-- type is no member of the extension (only its table is), and adding it
-- to the extension and dropping it again removes the entry.  Repeatable:
-- every update runs it again.
DO $$
DECLARE
    t regtype;
BEGIN
    FOR t IN SELECT c.reltype::regtype FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'v')
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON TYPE %s FROM PUBLIC, %s', t,
                                  (SELECT y.typowner::regrole FROM pg_catalog.pg_type y
                                    WHERE y.oid = t));
        IF EXISTS (SELECT FROM pg_catalog.pg_init_privs p
                    WHERE p.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass
                      AND p.objoid = t)
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                              AND d.objid = t
                              AND d.deptype = 'e') THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION workflow ADD TYPE %s', t);
            EXECUTE pg_catalog.format('ALTER EXTENSION workflow DROP TYPE %s', t);
        END IF;
    END LOOP;
END
$$;

-- roles are cluster-wide: create them once, keep them across DROP EXTENSION
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['workflow_user', 'workflow_worker', 'workflow_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;
COMMENT ON ROLE workflow_user IS 'workflow: define workflows, create jobs, see and act on the jobs one created';
COMMENT ON ROLE workflow_worker IS 'workflow: runner protocol and external task protocol (workers)';
COMMENT ON ROLE workflow_admin IS 'workflow: everything, and every role''s jobs';
GRANT workflow_user, workflow_worker TO workflow_admin;

GRANT USAGE ON SCHEMA workflow TO workflow_user, workflow_worker;
GRANT USAGE ON TYPE workflow.execution, workflow.phase, workflow.task
    TO workflow_user, workflow_worker;

GRANT EXECUTE ON FUNCTION
    workflow.schedule(text, text, text, jsonb),
    workflow.unschedule(text),
    workflow._require_pg_cron(),
    workflow._check_name(text, text, boolean),
    workflow._name_pattern(),
    workflow._check_payload(jsonb, text),
    workflow._schedules(),
    workflow._cron_next(text, timestamptz),
    workflow._cron_field(text, integer, integer),
    workflow._jsonb_or_null(text),
    -- read by the runner_status view, with the reader's rights
    workflow._in_server_workers(),
    workflow.create_workflow(jsonb),
    workflow.drop_workflow(text, boolean),
    workflow.create_job(text, jsonb, text, timestamptz, integer, text, integer, text, text),
    workflow.create_jobs(text, jsonb[], text[], timestamptz, integer, text[], text),
    workflow.get_job(bigint),
    workflow.cancel_job(bigint, text),
    workflow.resume_job(bigint, jsonb, text),
    workflow.retry_job(bigint),
    workflow.add_info(bigint, jsonb),
    workflow.job_info(bigint),
    workflow.signal(text, jsonb),
    workflow.diagram(text, integer, text),
    workflow.job_diagram(bigint, text),
    -- called by the SQL of tasks, which runs as the job's creator
    workflow.requeue(interval),
    workflow.wait(),
    workflow.add_info(jsonb)
    TO workflow_user;

GRANT EXECUTE ON FUNCTION
    workflow.next_jobs(integer, integer, text),
    workflow.run_job(bigint, text),
    workflow.finish_job(bigint, text, workflow.execution, jsonb),
    workflow.pause_job(bigint, text),
    workflow.register_runner(text, text),
    workflow.runner_active(text),
    workflow.poll_tasks(text, text, integer, interval, text),
    workflow.complete_task(bigint, bigint, jsonb),
    workflow.complete_tasks(bigint[], bigint[], jsonb[]),
    workflow.fail_task(bigint, bigint, text, boolean),
    workflow.extend_task(bigint, bigint, interval),
    workflow.requeue_task(bigint, bigint, interval),
    -- read by the runner_status view, with the reader's rights
    workflow._in_server_workers()
    TO workflow_worker;

GRANT EXECUTE ON FUNCTION
    workflow.inactive_runners(),
    workflow.stale_jobs(),
    workflow.pause_task_type(text),
    workflow.resume_task_type(text),
    workflow.job_context(workflow.jobs),
    workflow.create_queue(text, integer, integer, interval, integer),
    workflow.alter_queue(text, integer, integer, interval, integer),
    workflow.drop_queue(text),
    workflow.delete_job(bigint),
    workflow.redact_job(bigint)
    TO workflow_admin;

GRANT SELECT ON workflow.workflows, workflow.tasks, workflow.jobs, workflow.task_runs,
                workflow.job_info, workflow.runners, workflow.task_types, workflow.target_locks,
                workflow.job_summary, workflow.runner_status, workflow.failed_jobs,
                workflow.slow_jobs, workflow.schedules, workflow.queues, workflow.queue_status
    TO workflow_user, workflow_worker;
