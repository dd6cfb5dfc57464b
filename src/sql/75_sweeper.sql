-------------------------------------------------------------------------------
-- The sweeper (called by src/sweeper.c)
-------------------------------------------------------------------------------

-- Heartbeats of the in-server workers, written by the sweeper from shared
-- memory (a runner inside a long task cannot write its own).
CREATE OR REPLACE FUNCTION workflow._in_server_heartbeat(p_ids text[], p_pids integer[])
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- a row some other transaction holds is skipped, not waited for: its
    -- heartbeat is written at the next pass
    WITH k AS (SELECT l.id FROM workflow.runners l WHERE l.id = ANY (p_ids)
                  FOR NO KEY UPDATE SKIP LOCKED)
    UPDATE workflow.runners r
       SET active_at = now(), pid = v.pid
      FROM k, unnest(p_ids, p_pids) AS v(id, pid)
     WHERE r.id = k.id AND v.id = k.id;
END
$$;
COMMENT ON FUNCTION workflow._in_server_heartbeat(text[], integer[]) IS
    'internal: heartbeat of the in-server workers, from shared memory';

-- One pass of the sweeper; returns what it did: how many tasks a crash
-- interrupted, timers, timeouts, stale jobs and jobs to prune it took on
-- ("crashed", "timers", "timeouts", "stale", "pruned", read by
-- src/sweeper.c), and in "failed" (only when there are any) the ids of the
-- jobs it could not handle.
--
-- Faults stay with their item: each of the five sections below handles
-- every item (a crash record, a timer, a timeout, a stale job) in a
-- subtransaction of its own (an exception block), so an item that fails
-- is rolled back alone, logged with its job id, and the pass goes on; each
-- section is another such block, so not even an error of its query stops
-- the other sections.
-- Jobs that failed at an earlier pass come back in p_skip: src/sweeper.c
-- leaves them alone for a while, so that they are neither retried at every
-- pass nor keep the jobs behind them in the batch's order from being
-- handled.
--
-- No session can stall a pass: every row lock on jobs is SKIP LOCKED (a
-- job a session holds, e.g. in an open transaction, is handled at a later
-- pass) and any other lock wait ends after lock_timeout with that item.
--
-- Retention: succeeded jobs older than p_retention (workflow.retention)
-- and failed or canceled ones older than p_failed_retention
-- (workflow.failed_retention; NULL: p_retention) are pruned.
CREATE OR REPLACE FUNCTION workflow._sweep(p_stale_action text, p_retention interval, p_batch integer,
                                           p_skip bigint[] DEFAULT '{}',
                                           p_failed_retention interval DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET lock_timeout = '1s'
AS $$
DECLARE
    skip        bigint[] := coalesce(p_skip, '{}');
    timers      record;
    timeouts    record;
    stale       record;
    pruned      record;
    failed      bigint[];
    crashed     record;
BEGIN
    SELECT * INTO crashed FROM workflow._sweep_crashed(p_stale_action, skip);
    SELECT * INTO timers FROM workflow._sweep_timers(p_batch, skip);
    SELECT * INTO timeouts FROM workflow._sweep_timeouts(p_batch, skip);
    SELECT * INTO stale FROM workflow._sweep_stale(p_stale_action, p_batch, skip);
    SELECT * INTO pruned FROM workflow._sweep_retention(p_retention, coalesce(p_failed_retention, p_retention),
                                                        p_batch, skip);

    failed := crashed.failed || timers.failed || timeouts.failed || stale.failed || pruned.failed;
    RETURN jsonb_build_object('crashed', crashed.handled,
                              'timers', timers.handled, 'timeouts', timeouts.handled,
                              'stale', stale.handled, 'pruned', pruned.handled)
           || CASE WHEN cardinality(failed) > 0
                   THEN jsonb_build_object('failed', failed) ELSE '{}' END;
END
$$;
COMMENT ON FUNCTION workflow._sweep(text, interval, integer, bigint[], interval) IS
    'internal: one pass of the sweeper: tasks a crash interrupted, elapsed timers, job timeouts, stale jobs, retention, each item in a subtransaction of its own';

-- An attempt of a locked job that its executor never finished (a crash of
-- the server, a worker that stopped reporting): a failed run with err,
-- then the on_stale action: "retry" runs the task again, anything else
-- cancels the job (its oncancel chain, if any).
CREATE OR REPLACE FUNCTION workflow._attempt_interrupted(j workflow.jobs, action text, err jsonb,
                                                        started timestamptz)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM workflow._record_run(j, (workflow._task_of(j)).name, 'failed', started, NULL, err);
    IF action = 'retry' THEN
        PERFORM workflow._enqueue_task(j, j.phase, j.step, j.task_attempt + 1, now(), j.in_fallback);
    ELSIF j.phase = 'oncancel' THEN
        PERFORM workflow._terminate(j, 'canceled', NULL, err);
    ELSE
        PERFORM workflow._cancel(j, err);
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._attempt_interrupted(workflow.jobs, text, jsonb, timestamptz) IS
    'internal: an attempt its executor never finished: a failed run, then retry or cancel (on_stale)';

-- The tasks the runners of this database were executing when the server
-- last crashed (src/crashrecord.c), each settled once: the one author of
-- "a crash interrupted the task".  A record names a job, its task (phase,
-- step, attempts) and the lease of the runner's claim.  When the job is
-- still at that task with no outcome recorded under that lease, the crash
-- interrupted it, and the job is either
--   running under the runner that is gone (its claim survived), or
--   queued again at that task: the claim, committed without waiting for
--     its WAL flush, was lost with the crash;
-- either way it is taken as the runner had it, and gets a failed run that
-- says the server crashed and its workflow's on_stale policy (or
-- p_stale_action): "retry" runs the task again, except that the third
-- crash in the same task (in this attempt of the job) fails it for good,
-- without retry (then its fallback, onerror, failed): no crash loop;
-- anything else cancels the job (its oncancel chain, if any).  Otherwise
-- (the job moved on, was pruned) there is nothing to do.  Runners do not
-- claim a job whose record is not settled yet (workflow._crash_held()).
-- Returns how many jobs it took on, and the ids of those it could not
-- handle.
CREATE OR REPLACE FUNCTION workflow._sweep_crashed(p_stale_action text, p_skip bigint[],
                                                   OUT handled integer, OUT failed bigint[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r           record;
    j           workflow.jobs;
    action      text;
    err         jsonb;
    crashes     bigint;
BEGIN
    handled := 0;
    failed := '{}';
    BEGIN
        FOR r IN SELECT c.* FROM workflow._crash_records() c WHERE c.job_id <> ALL (p_skip)
        LOOP
            BEGIN
                SELECT * INTO j FROM workflow.jobs WHERE id = r.job_id
                   FOR NO KEY UPDATE SKIP LOCKED;
                IF NOT FOUND THEN
                    -- a session holds the job: at a later pass
                    CONTINUE WHEN EXISTS (SELECT 1 FROM workflow.jobs WHERE id = r.job_id);
                    PERFORM workflow._crash_settled(r.job_id);
                    CONTINUE;
                END IF;
                handled := handled + 1;
                IF j.task_type IS NULL AND j.execution IN ('running', 'queued')
                   AND j.phase::text = r.phase AND j.step = r.step
                   AND j.attempt = r.attempt AND j.task_attempt = r.task_attempt
                   AND NOT EXISTS (SELECT 1 FROM workflow.task_runs t
                                    WHERE t.job_id = j.id AND t.lease = r.lease
                                      AND t.job_attempt = j.attempt AND t.phase = j.phase
                                      AND t.step = j.step AND t.attempt = j.task_attempt) THEN
                    err := jsonb_build_object('message', format('the server crashed while runner "%s" ran the task', r.runner_id),
                                              'stale', true, 'crashed', true);
                    IF j.execution = 'queued' THEN
                        -- the job as the lost claim had made it
                        err := err || '{"claim_lost": true}';
                        j.execution := 'running';
                        j.runner_id := r.runner_id;
                        j.lease := r.lease;
                    END IF;
                    action := coalesce((SELECT w.on_stale FROM workflow.workflows w WHERE w.id = j.workflow_id),
                                       p_stale_action);
                    crashes := 1 + (SELECT count(*) FROM workflow.task_runs t
                                     WHERE t.job_id = j.id AND t.job_attempt = j.attempt
                                       AND t.phase = j.phase AND t.step = j.step
                                       AND coalesce((t.error ->> 'crashed')::boolean, false));
                    IF action = 'retry' AND crashes >= 3 THEN
                        PERFORM workflow._task_failed(j, err || jsonb_build_object('crashes', crashes),
                                                      r.started_at, false);
                    ELSE
                        PERFORM workflow._attempt_interrupted(j, action, err, r.started_at);
                    END IF;
                END IF;
                PERFORM workflow._crash_settled(r.job_id);
            EXCEPTION WHEN OTHERS THEN
                failed := failed || r.job_id;
                PERFORM workflow._sweep_failed('settle the crash of', r.job_id, SQLSTATE, SQLERRM);
            END;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        PERFORM workflow._sweep_failed('settle crash records', NULL, SQLSTATE, SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION workflow._sweep_crashed(text, bigint[]) IS
    'internal: the sweeper''s tasks a crash of the server interrupted (src/crashrecord.c): a failed run and on_stale, each job in a subtransaction of its own';

-- The sweeper's timers: wait tasks whose timer has elapsed succeed, with
-- their timer's end as their start; waits for a signal or for children
-- whose timeout has passed fail.  Returns how many it took on, and the
-- ids of the jobs it could not handle.
CREATE OR REPLACE FUNCTION workflow._sweep_timers(p_batch integer, p_skip bigint[],
                                                  OUT handled integer, OUT failed bigint[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j           workflow.jobs;
BEGIN
    handled := 0;
    failed := '{}';
    BEGIN
        FOR j IN SELECT * FROM workflow.jobs
                  WHERE execution = 'waiting' AND run_at <= now() AND id <> ALL (p_skip)
                  ORDER BY run_at LIMIT p_batch
                    FOR NO KEY UPDATE SKIP LOCKED
        LOOP
            handled := handled + 1;
            BEGIN
                IF j.waiting_for IN ('signal', 'children') THEN
                    -- a wait for a signal or for children that has a timeout
                    PERFORM workflow._task_failed(j, jsonb_build_object('message',
                        format('task "%s" timed out waiting for %s', (workflow._task_of(j)).name,
                               CASE j.waiting_for WHEN 'signal' THEN format('signal %s', quote_literal(j.signal_key))
                                    ELSE 'its children' END)), j.claimed_at);
                ELSE
                    PERFORM workflow._task_succeeded(j, NULL, j.run_at);
                END IF;
            EXCEPTION WHEN OTHERS THEN
                failed := failed || j.id;
                PERFORM workflow._sweep_failed('end the timer of', j.id, SQLSTATE, SQLERRM);
            END;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        PERFORM workflow._sweep_failed('end timers', NULL, SQLSTATE, SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION workflow._sweep_timers(integer, bigint[]) IS
    'internal: the sweeper''s elapsed wait timers, each job in a subtransaction of its own';

-- The sweeper's job timeouts: running and waiting jobs past their deadline
-- time out (queued ones are handled by the runner that claims them).  One
-- query per state, each in a section of its own, so that each uses its
-- state's partial index.  Returns how many it took on, and the ids of the
-- jobs it could not handle.
CREATE OR REPLACE FUNCTION workflow._sweep_timeouts(p_batch integer, p_skip bigint[],
                                                    OUT handled integer, OUT failed bigint[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j           workflow.jobs;
    state       workflow.execution;
    cur         refcursor;
BEGIN
    handled := 0;
    failed := '{}';
    FOREACH state IN ARRAY ARRAY['running', 'waiting']::workflow.execution[] LOOP
        BEGIN
            cur := NULL;
            IF state = 'running' THEN
                OPEN cur FOR SELECT * FROM workflow.jobs
                              WHERE execution = 'running' AND deadline < now()
                                AND id <> ALL (p_skip)
                              LIMIT p_batch
                                FOR NO KEY UPDATE SKIP LOCKED;
            ELSE
                OPEN cur FOR SELECT * FROM workflow.jobs
                              WHERE execution = 'waiting' AND deadline < now()
                                AND id <> ALL (p_skip)
                              LIMIT p_batch
                                FOR NO KEY UPDATE SKIP LOCKED;
            END IF;
            LOOP
                FETCH cur INTO j;
                EXIT WHEN NOT FOUND;
                handled := handled + 1;
                BEGIN
                    -- stop the SQL an in-server runner executes for it at
                    -- commit; an external task needs no signal (the lease
                    -- ends, its worker's report is refused)
                    IF j.execution = 'running' AND j.task_type IS NULL THEN
                        PERFORM workflow._interrupt_at_commit(j.id);
                    END IF;
                    PERFORM workflow._job_timed_out(j, NULL);
                EXCEPTION WHEN OTHERS THEN
                    failed := failed || j.id;
                    PERFORM workflow._sweep_failed('time out', j.id, SQLSTATE, SQLERRM);
                END;
            END LOOP;
            CLOSE cur;
        EXCEPTION WHEN OTHERS THEN
            PERFORM workflow._sweep_failed('enforce job timeouts', NULL, SQLSTATE, SQLERRM);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION workflow._sweep_timeouts(integer, bigint[]) IS
    'internal: the sweeper''s job timeouts of running and waiting jobs, each job in a subtransaction of its own';

-- The sweeper's stale jobs: a task whose lease expired (its worker died or
-- hung) is a failed attempt.  A job of an in-server runner that stopped
-- (the server crashed in the middle of its batch: src/crashrecord.c) is
-- handed back, no attempt counted, unless a crash record names it: nothing
-- of it ran, or what ran was rolled back with the batch.  The job whose
-- task was executing is _sweep_crashed's, which runs first in a pass.  A
-- job an external worker claimed with run_job and stopped reporting on
-- gets a failed run and follows its workflow's on_stale policy, or
-- p_stale_action (workflow.stale_job_action): "retry" runs the task again,
-- anything else cancels the job (its oncancel chain, if any).  Returns how
-- many it took on, and the ids of the jobs it could not handle.
CREATE OR REPLACE FUNCTION workflow._sweep_stale(p_stale_action text, p_batch integer, p_skip bigint[],
                                                 OUT handled integer, OUT failed bigint[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j           workflow.jobs;
    stale       workflow.jobs;
    action      text;
    err         jsonb;
    held        bigint[] := workflow._crash_held();
BEGIN
    handled := 0;
    failed := '{}';
    BEGIN
        FOR stale IN SELECT s.* FROM workflow.stale_jobs() s
                      WHERE s.id <> ALL (p_skip) AND s.id <> ALL (held) LIMIT p_batch
        LOOP
            BEGIN
                -- IS TRUE: the lookup by id and lease stays on the primary
                -- key (src/README.md, "Claim path")
                SELECT * INTO j FROM workflow.jobs
                 WHERE id = stale.id AND lease = stale.lease
                   AND (execution = 'running') IS TRUE
                   FOR NO KEY UPDATE SKIP LOCKED;
                CONTINUE WHEN NOT FOUND;
                handled := handled + 1;
                IF j.lease_expires_at < now() THEN
                    -- a failed attempt, handed out again per the task's
                    -- attempts and backoff
                    PERFORM workflow._task_failed(j,
                        jsonb_build_object('sqlstate', '57014',
                                           'message', format('lease of worker "%s" expired', j.runner_id),
                                           'lease_expired', true),
                        j.claimed_at, true);
                    CONTINUE;
                END IF;
                IF EXISTS (SELECT 1 FROM workflow.runners r
                            WHERE r.id = j.runner_id AND r.kind = 'runner') THEN
                    -- claimed, never started: the hand-back of a runner
                    PERFORM workflow._runner_record(j.id, j.lease, 'release', NULL,
                        jsonb_build_object('message', format('runner "%s" stopped before the task started', j.runner_id),
                                           'stale', true),
                        j.claimed_at, NULL, NULL);
                    CONTINUE;
                END IF;
                action := coalesce((SELECT w.on_stale FROM workflow.workflows w WHERE w.id = j.workflow_id),
                                   p_stale_action);
                err := jsonb_build_object('message', format('runner "%s" stopped reporting', j.runner_id),
                                          'stale', true);
                PERFORM workflow._attempt_interrupted(j, action, err, j.claimed_at);
            EXCEPTION WHEN OTHERS THEN
                failed := failed || stale.id;
                PERFORM workflow._sweep_failed('handle stale', stale.id, SQLSTATE, SQLERRM);
            END;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        PERFORM workflow._sweep_failed('handle stale jobs', NULL, SQLSTATE, SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION workflow._sweep_stale(text, integer, bigint[]) IS
    'internal: the sweeper''s stale jobs (expired leases, runners that stopped reporting), each job in a subtransaction of its own';

-- The sweeper's retention: succeeded jobs older than p_retention, failed
-- and canceled ones older than p_failed_retention (none of a kind whose
-- retention is not positive) are deleted, at most p_batch in a pass, in
-- one statement per table; one job at a time only when that fails.  Only
-- roots are chosen (their trees go with them), oldest first per end state
-- (one range of jobs_finished each), so that neither cut-off makes the
-- other's query read the jobs it keeps.  Returns how many it took on, and
-- the ids of the jobs it could not delete.
CREATE OR REPLACE FUNCTION workflow._sweep_retention(p_retention interval, p_failed_retention interval,
                                                     p_batch integer, p_skip bigint[],
                                                     OUT handled integer, OUT failed bigint[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids         bigint[] := '{}';
    one         bigint;
    state       workflow.execution;
    keep        interval;
BEGIN
    handled := 0;
    failed := '{}';
    IF NOT (p_retention > interval '0' OR p_failed_retention > interval '0') THEN
        RETURN;
    END IF;
    BEGIN
        FOREACH state IN ARRAY ARRAY['succeeded', 'failed', 'canceled']::workflow.execution[] LOOP
            keep := CASE WHEN state = 'succeeded' THEN p_retention ELSE p_failed_retention END;
            CONTINUE WHEN keep IS NULL OR keep <= interval '0' OR cardinality(ids) >= p_batch;
            -- none of whose children is still in progress (a canceled
            -- child's oncancel chain)
            ids := ids || ARRAY(
                SELECT r.id FROM workflow.jobs r
                 WHERE r.execution = state AND r.finished_at < now() - keep
                   AND r.parent_id IS NULL
                   AND r.id <> ALL (p_skip)
                   AND NOT EXISTS (SELECT 1 FROM workflow.jobs c
                                    WHERE c.root_id = r.id AND c.parent_id IS NOT NULL
                                      AND c.execution IN ('queued', 'running', 'waiting'))
                 ORDER BY r.finished_at LIMIT p_batch - cardinality(ids)
                   FOR UPDATE OF r SKIP LOCKED);
        END LOOP;
        -- and the signals kept for longer than their retention
        DELETE FROM workflow.signals
         WHERE sent_at < now() - workflow._signal_retention();
        handled := cardinality(ids);
        IF handled > 0 THEN
            BEGIN
                PERFORM workflow._sweep_prune(ids);
            EXCEPTION WHEN OTHERS THEN
                FOREACH one IN ARRAY ids LOOP
                    BEGIN
                        PERFORM workflow._sweep_prune(ARRAY[one]);
                    EXCEPTION WHEN OTHERS THEN
                        failed := failed || one;
                        PERFORM workflow._sweep_failed('prune', one, SQLSTATE, SQLERRM);
                    END;
                END LOOP;
            END;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM workflow._sweep_failed('prune finished jobs', NULL, SQLSTATE, SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION workflow._sweep_retention(interval, interval, integer, bigint[]) IS
    'internal: the sweeper''s retention: delete succeeded jobs older than workflow.retention and failed or canceled ones older than workflow.failed_retention, a batch at a time';

-- Delete finished jobs with their task runs and info (the sweeper's
-- retention; the caller holds their row locks).
CREATE OR REPLACE FUNCTION workflow._sweep_prune(p_ids bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- with their trees
    p_ids := p_ids || ARRAY(SELECT c.id FROM workflow.jobs c
                             WHERE c.root_id = ANY (p_ids) AND c.parent_id IS NOT NULL);
    -- every table that names a job
    DELETE FROM workflow.task_runs WHERE job_id = ANY (p_ids);
    DELETE FROM workflow.job_info WHERE job_id = ANY (p_ids);
    DELETE FROM workflow.joins WHERE job_id = ANY (p_ids);
    DELETE FROM workflow.target_locks WHERE job_id = ANY (p_ids);
    DELETE FROM workflow.jobs WHERE id = ANY (p_ids);
END
$$;
COMMENT ON FUNCTION workflow._sweep_prune(bigint[]) IS
    'internal: delete finished root jobs with their trees and every row that names them (retention, delete_job)';

-- Log what the sweeper could not do (a job, or a whole section of a pass)
-- and the error that stopped it; the pass goes on.
CREATE OR REPLACE FUNCTION workflow._sweep_failed(p_what text, p_job bigint, p_sqlstate text, p_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_job IS NULL THEN
        RAISE WARNING 'workflow sweeper could not %', p_what
            USING DETAIL = format('%s (SQLSTATE %s)', p_message, p_sqlstate);
    ELSE
        RAISE WARNING 'workflow sweeper could not % job %', p_what, p_job
            USING DETAIL = format('%s (SQLSTATE %s)', p_message, p_sqlstate),
                  HINT = 'The sweeper tries the job again at a later pass.';
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._sweep_failed(text, bigint, text, text) IS
    'internal: log an item or a section of a sweeper pass that failed';

-------------------------------------------------------------------------------

-- The sweeper's pruning of external runners: the rows of external workers
-- not heard from for longer than p_retention (workflow.runner_retention;
-- none when it is not positive) that hold no running job, oldest first, a
-- batch at a time, skipping a row a worker's call holds.  A worker whose
-- row went gets its id again, as its own, at its next register_runner,
-- poll_tasks or run_job.  Returns how many rows it removed; an error is
-- logged and ends only this part of the pass.
CREATE OR REPLACE FUNCTION workflow._sweep_runners(p_retention interval, p_batch integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed     integer := 0;
BEGIN
    IF p_retention IS NULL OR p_retention <= interval '0' THEN
        RETURN 0;
    END IF;
    BEGIN
        WITH gone AS (
            SELECT r.id FROM workflow.runners r
             WHERE r.kind = 'external' AND r.active_at < now() - p_retention
               AND NOT EXISTS (SELECT 1 FROM workflow.jobs j
                                WHERE j.execution = 'running' AND j.runner_id = r.id)
             ORDER BY r.active_at
             LIMIT p_batch
               FOR UPDATE SKIP LOCKED)
        DELETE FROM workflow.runners r USING gone WHERE r.id = gone.id;
        GET DIAGNOSTICS removed = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        removed := 0;
        PERFORM workflow._sweep_failed('prune external runners', NULL, SQLSTATE, SQLERRM);
    END;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION workflow._sweep_runners(interval, integer) IS
    'internal: the sweeper''s pruning of external runners not heard from for longer than workflow.runner_retention that hold no running job';
