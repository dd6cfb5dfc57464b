--
-- The sweeper's faults and the pending job interrupts of a transaction
-- (src/wakeup.c, src/sweeper.c, workflow._sweep):
--
-- * PREPARE TRANSACTION is refused (0A000) while the transaction has
--   canceled a running job: COMMIT PREPARED could not interrupt its SQL.
-- * A cancel undone by ROLLBACK TO SAVEPOINT or by an exception block
--   leaves no interrupt behind: PREPARE succeeds (pg_regress's instance
--   allows two prepared transactions); one of a released savepoint or of a
--   successful exception block belongs to the transaction.
-- * A transaction may interrupt any number of jobs.
-- * One pass of _sweep times out more than 64 running external tasks, and
--   an item that fails is logged with its job id, returned in "failed" and
--   does not stop the others; a job in p_skip is left alone.
--
-- No runner executes jobs in this instance.  Workflows are named sf_*,
-- runners sf-*, task types sf.*; the file removes them at the end.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 6001 whatever ran before, so that the
-- messages that name a job are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 6001, false) AS first_job_id;

SELECT workflow.create_workflow('{"name": "sf_sql", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "sf_ext", "timeout": "1 hour", "chain": [{"name": "x", "task_type": "sf.type"}]}');
SELECT workflow.create_workflow('{"name": "sf_timer", "chain": [{"name": "hold", "wait": "1 s"}, {"name": "b", "sql": "select 2"}]}');

-- a running job (claimed by hand, as a runner would)
SELECT workflow.create_job('sf_sql') AS j \gset
SELECT (workflow.run_job(:j, 'sf-r1')).execution;
SELECT set_config('sf.job', :'j', false) IS NOT NULL AS job_set;

-------------------------------------------------------------------------------
-- PREPARE TRANSACTION and pending interrupts
-------------------------------------------------------------------------------

-- refused: the cancel would commit without stopping the job's SQL
BEGIN;
SELECT workflow.cancel_job(:j);
PREPARE TRANSACTION 'sf_cancel';
SELECT execution FROM workflow.jobs WHERE id = :j;
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'sf_cancel';

-- the cancel of a rolled-back savepoint leaves nothing pending
BEGIN;
SAVEPOINT s;
SELECT workflow.cancel_job(:j);
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'sf_cancel';
ROLLBACK PREPARED 'sf_cancel';

-- nor does one of a savepoint released into a rolled-back one
BEGIN;
SAVEPOINT a;
SAVEPOINT b;
SELECT workflow.cancel_job(:j);
RELEASE SAVEPOINT b;
ROLLBACK TO SAVEPOINT a;
PREPARE TRANSACTION 'sf_cancel';
ROLLBACK PREPARED 'sf_cancel';

-- nor one of an exception block that failed
BEGIN;
DO $$
BEGIN
    PERFORM workflow.cancel_job(current_setting('sf.job')::bigint);
    RAISE EXCEPTION 'undo the cancel';
EXCEPTION WHEN raise_exception THEN
    NULL;
END
$$;
PREPARE TRANSACTION 'sf_cancel';
ROLLBACK PREPARED 'sf_cancel';

-- a released savepoint hands its interrupt to the transaction
BEGIN;
SAVEPOINT s;
SELECT workflow.cancel_job(:j);
RELEASE SAVEPOINT s;
PREPARE TRANSACTION 'sf_cancel';

-- so does an exception block that succeeded
BEGIN;
DO $$
BEGIN
    PERFORM workflow.cancel_job(current_setting('sf.job')::bigint);
EXCEPTION WHEN raise_exception THEN
    NULL;
END
$$;
PREPARE TRANSACTION 'sf_cancel';

-- all of that changed nothing
SELECT execution FROM workflow.jobs WHERE id = :j;

-- cancel of a queued job interrupts nothing: it can be prepared
SELECT workflow.create_job('sf_sql') AS q \gset
BEGIN;
SELECT workflow.cancel_job(:q);
PREPARE TRANSACTION 'sf_cancel';
COMMIT PREPARED 'sf_cancel';
SELECT execution FROM workflow.jobs WHERE id = :q;
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'sf_cancel';

-- any number of interrupts in one transaction (there was a limit of 64)
BEGIN;
DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        PERFORM workflow._interrupt_at_commit(i);
    END LOOP;
END
$$;
COMMIT;

-- a committed cancel of the running job
SELECT workflow.cancel_job(:j);
SELECT execution FROM workflow.jobs WHERE id = :j;

-------------------------------------------------------------------------------
-- _sweep: more than 64 external tasks past their job timeout in one pass
-------------------------------------------------------------------------------

SELECT count(workflow.create_job('sf_ext', jsonb_build_object('n', g))) AS created
  FROM generate_series(1, 70) g;
SELECT count(*) AS polled FROM workflow.poll_tasks('sf.type', 'sf-w1', 100, '0');
UPDATE workflow.jobs SET deadline = now() - interval '1 s'
 WHERE workflow = 'sf_ext' AND execution = 'running';
SELECT workflow._sweep('cancel', '0', 500);
SELECT execution, error ->> 'message' AS message, count(*)
  FROM workflow.jobs WHERE workflow = 'sf_ext' GROUP BY 1, 2;

-------------------------------------------------------------------------------
-- _sweep: an item that fails does not stop the others
-------------------------------------------------------------------------------

-- three elapsed timers (waiting as a runner leaves them); ending the second
-- one fails: a trigger injects a fault into its task run
SELECT count(workflow.create_job('sf_timer', jsonb_build_object('n', g))) AS created
  FROM generate_series(1, 3) g;
UPDATE workflow.jobs SET execution = 'waiting', run_at = now() - interval '1 s'
 WHERE workflow = 'sf_timer';
SELECT min(id) + 1 AS bad FROM workflow.jobs WHERE workflow = 'sf_timer' \gset
UPDATE workflow.jobs SET params = params || '{"bad": true}' WHERE id = :bad;
CREATE FUNCTION public.sf_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT j.params ? 'bad' FROM workflow.jobs j WHERE j.id = NEW.job_id) THEN
        RAISE EXCEPTION 'injected fault' USING ERRCODE = 'data_exception';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sf_fault BEFORE INSERT ON workflow.task_runs
    FOR EACH ROW EXECUTE FUNCTION public.sf_fault();
SELECT workflow._sweep('cancel', '0', 500);
SELECT params ->> 'n' AS n, execution, step FROM workflow.jobs WHERE workflow = 'sf_timer' ORDER BY id;
-- left alone while in p_skip
SELECT workflow._sweep('cancel', '0', 500, ARRAY[:bad]::bigint[]);
SELECT execution FROM workflow.jobs WHERE id = :bad;
-- handled once the fault is gone
DROP TRIGGER sf_fault ON workflow.task_runs;
DROP FUNCTION public.sf_fault();
SELECT workflow._sweep('cancel', '0', 500);
SELECT params ->> 'n' AS n, execution, step FROM workflow.jobs WHERE workflow = 'sf_timer' ORDER BY id;

-------------------------------------------------------------------------------
-- _sweep: a job that cannot be pruned does not keep the others
-------------------------------------------------------------------------------

-- the 70 timed-out jobs finished two days ago; the task runs of one of
-- them cannot be deleted
UPDATE workflow.jobs SET finished_at = now() - interval '2 days' WHERE workflow = 'sf_ext';
SELECT min(id) AS keep FROM workflow.jobs WHERE workflow = 'sf_ext' \gset
CREATE FUNCTION public.sf_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'injected fault' USING ERRCODE = 'data_exception';
END
$$;
CREATE TRIGGER sf_keep BEFORE DELETE ON workflow.task_runs
    FOR EACH ROW WHEN (OLD.job_id = :keep) EXECUTE FUNCTION public.sf_keep();
SELECT workflow._sweep('cancel', '1 day', 500);
SELECT count(*) AS left, min(id) = :keep AS is_keep FROM workflow.jobs WHERE workflow = 'sf_ext';
SELECT count(*) AS runs_left FROM workflow.task_runs r
 WHERE NOT EXISTS (SELECT 1 FROM workflow.jobs j WHERE j.id = r.job_id);
DROP TRIGGER sf_keep ON workflow.task_runs;
DROP FUNCTION public.sf_keep();
SELECT workflow._sweep('cancel', '1 day', 500);
SELECT count(*) AS left FROM workflow.jobs WHERE workflow = 'sf_ext';

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true) FROM unnest(ARRAY['sf_sql', 'sf_ext', 'sf_timer']) name;
DELETE FROM workflow.runners WHERE id LIKE 'sf-%';
