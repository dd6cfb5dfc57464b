-- 100_control_flow.sql: control-flow entries (parallel, switch, sub-workflow,
-- foreach, signal waits) run as child jobs: what _spawn starts, how the
-- children's ends join their parent (once, in order, with fail_fast or
-- without), foreach's concurrency, signals (waiting first, sent first, of
-- another role), and what the user functions do with parents and children
-- (cancel_job, resume_job, retry_job, get_job, the job context).
--
-- No background runner runs in the pgTAP cluster (workflow.enabled = off,
-- workflow.runners = 0): this file plays the runners (run_job and
-- _runner_record, as in 080_state_machine_edges.sql).  A runner that
-- reaches a control-flow entry reports wait_step with the value of the
-- entry's SQL, which the test gives directly.  One transaction: the
-- deferred trigger jobs_child_ended that joins a child to its parent at
-- commit is made immediate, so that it fires at the end of each statement.

BEGIN;
SELECT plan(104);

SET LOCAL search_path = public, pg_catalog;
SET CONSTRAINTS ALL IMMEDIATE;

CREATE ROLE cft_alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE cft_bob LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO cft_alice, cft_bob;

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------

-- compact state: "execution phase/step tTASK-ATTEMPT [waiting_for]"
CREATE FUNCTION pg_temp.st(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s/%s t%s%s', execution, phase, step, task_attempt,
                  coalesce(' ' || waiting_for, ''))
      FROM workflow.jobs WHERE id = p_id
$$;

-- the children of a job, in order: "index:branch:execution[:waiting_for]"
CREATE FUNCTION pg_temp.kids(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(format('%s:%s:%s%s', child_index, coalesce(branch, '-'), execution,
                             coalesce(':' || waiting_for, '')), ' ' ORDER BY id)
      FROM workflow.jobs WHERE parent_id = p_id
$$;

-- the i-th child (0-based, in creation order) of a job
CREATE FUNCTION pg_temp.kid(p_id bigint, i integer)
RETURNS bigint LANGUAGE sql AS $$
    SELECT id FROM workflow.jobs WHERE parent_id = p_id ORDER BY id OFFSET i LIMIT 1
$$;

-- what an in-server runner reports for the running job (its current lease)
CREATE FUNCTION pg_temp.rec(p_id bigint, p_outcome workflow.outcome, p_output jsonb DEFAULT NULL,
                            p_error jsonb DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM workflow._runner_record(p_id, (SELECT lease FROM workflow.jobs WHERE id = p_id),
                                        p_outcome, p_output, p_error, now(), NULL, NULL)
$$;

-- claim (run_job) unless running, and report an outcome as a runner: the
-- job's state after
CREATE FUNCTION pg_temp.run(p_id bigint, p_outcome workflow.outcome, p_output jsonb DEFAULT NULL,
                            p_error jsonb DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflow.jobs SET run_at = now() WHERE id = p_id AND execution = 'queued' AND run_at > now();
    -- a runner goes on with the next SQL task of a job it ran
    IF (SELECT execution FROM workflow.jobs WHERE id = p_id) <> 'running'
       AND (SELECT r.lease FROM workflow.run_job(p_id, 'r1') r) IS NULL THEN
        RAISE EXCEPTION 'job % could not be claimed: %', p_id, pg_temp.st(p_id);
    END IF;
    PERFORM pg_temp.rec(p_id, p_outcome, p_output, p_error);
    RETURN pg_temp.st(p_id);
END
$$;

-- the task runs of a job: "task:status" in order
CREATE FUNCTION pg_temp.runs(p_id bigint)
RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s:%s', task, status), ' ' ORDER BY id), '')
      FROM workflow.task_runs WHERE job_id = p_id
$$;

-- the output of the last succeeded run of task p_task of a job
CREATE FUNCTION pg_temp.out(p_id bigint, p_task text)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT output FROM workflow.task_runs WHERE job_id = p_id AND task = p_task AND status = 'succeeded'
     ORDER BY id DESC LIMIT 1
$$;

-- the SQLSTATE of p_sql, or 'ok'
CREATE FUNCTION pg_temp.state_of(p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- p_sql as role p_role: its first column as text (effects kept)
CREATE FUNCTION pg_temp.as_role(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_sql INTO r;
    RESET ROLE;
    RETURN r;
END
$$;

-------------------------------------------------------------------------------
-- Workflows (setup, output not shown)
-------------------------------------------------------------------------------

\o /dev/null
SELECT workflow.create_workflow('{"name": "cft_par", "chain": [
    {"name": "first", "sql": "select 1"},
    {"name": "checks", "parallel": {"fraud": [{"name": "score", "sql": "select 1"}],
                                    "stock": [{"name": "reserve", "sql": "select 2"},
                                              {"name": "hold", "sql": "select 3"}]}},
    {"name": "after", "sql": "select 4"}]}');
SELECT workflow.create_workflow('{"name": "cft_retry", "chain": [
    {"name": "checks", "parallel": {"a": [{"name": "a1", "sql": "select 1"}],
                                    "b": [{"name": "b1", "sql": "select 2"}]},
     "attempts": 2, "delay": 0}]}');
SELECT workflow.create_workflow('{"name": "cft_onerror", "chain": [
    {"name": "checks", "parallel": {"a": [{"name": "a1", "sql": "select 1"}],
                                    "b": [{"name": "b1", "sql": "select 2"}]}}],
    "onerror": [{"name": "undo", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "cft_nofail", "chain": [
    {"name": "checks", "parallel": {"a": [{"name": "a1", "sql": "select 1"}],
                                    "b": [{"name": "b1", "sql": "select 2"}]},
     "fail_fast": false}]}');
SELECT workflow.create_workflow('{"name": "cft_switch", "chain": [
    {"name": "route", "switch": "select 1",
     "cases": {"big": [{"name": "truck", "sql": "select 1"}], "small": [{"name": "bike", "sql": "select 1"}]},
     "default": [{"name": "walk", "sql": "select 1"}]},
    {"name": "done", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "cft_switch_nd", "chain": [
    {"name": "route", "switch": "select 1", "cases": {"big": [{"name": "truck", "sql": "select 1"}]}}]}');
SELECT workflow.create_workflow('{"name": "cft_child", "chain": [{"name": "c", "sql": "select 1"}],
                                  "oncancel": [{"name": "undo_c", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "cft_sub", "chain": [
    {"name": "ship", "workflow": "cft_child", "params": "select 1"},
    {"name": "ship2", "workflow": "cft_child"}]}');
SELECT workflow.create_workflow('{"name": "cft_each", "chain": [
    {"name": "notify", "foreach": "select 1", "do": [{"name": "send", "sql": "select 1"}], "concurrency": 2},
    {"name": "done", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "cft_each_wf", "chain": [
    {"name": "notify", "foreach": "select 1", "do": {"workflow": "cft_child"}}]}');
SELECT workflow.create_workflow('{"name": "cft_signal", "chain": [
    {"name": "approval", "wait": "signal", "key": "select 1"},
    {"name": "after", "sql": "select 1"}]}');
\o

-------------------------------------------------------------------------------
-- parallel: one child per branch, the parent waits; the last child's end
-- continues the parent once, with the branches' outputs
-------------------------------------------------------------------------------

SELECT workflow.create_job('cft_par', '{"order": 7}') AS par \gset
SELECT pg_temp.run(:par, 'succeeded', '{"one": 1}') AS ignore \gset
SELECT is(pg_temp.run(:par, 'wait_step'), 'waiting chain/1 t1 children',
          'parallel: the parent waits for its children');
SELECT is(pg_temp.kids(:par), '0:fraud:queued 1:stock:queued',
          'parallel: one queued child per branch, in the order of the definition');
SELECT is((SELECT count(*)::integer FROM workflow.jobs c
            WHERE c.parent_id = :par AND c.root_id = :par AND c.parent_task = 'checks'
              AND c.parent_lease = (SELECT lease FROM workflow.jobs WHERE id = :par)
              AND c.params = '{"order": 7}' AND c.item IS NULL AND c.waiting_for IS NULL
              AND c.workflow = 'cft_par/checks/' || c.branch
              AND c.workflow_id = (SELECT w.id FROM workflow.workflows w WHERE w.name = c.workflow)
              AND c.created_by = (SELECT created_by FROM workflow.jobs WHERE id = :par)),
          2, 'parallel: the children carry parent, root, entry, lease, branch, params and their part');
SELECT is((SELECT format('%s/%s/%s', total, pending, fail_fast) FROM workflow.joins WHERE job_id = :par),
          '2/2/t', 'parallel: a join row counts the children');

-- job context of a child: the parent's job and results, its own results
SELECT pg_temp.run(pg_temp.kid(:par, 1), 'succeeded', '"reserved"') AS ignore \gset
SELECT is((SELECT workflow.job_context(c) FROM workflow.jobs c WHERE c.id = pg_temp.kid(:par, 1))
              - 'task',
          jsonb_build_object('job', (SELECT workflow.job_context(p) -> 'job' FROM workflow.jobs p WHERE p.id = :par),
                             'results', '{"first": {"one": 1}, "reserve": "reserved"}'::jsonb,
                             'child', jsonb_build_object('id', pg_temp.kid(:par, 1), 'entry', 'checks',
                                                         'branch', 'stock', 'index', 1)),
          'job context of a branch child: the parent''s job, the parent''s results and its own, itself under "child"');

SELECT is(pg_temp.run(pg_temp.kid(:par, 0), 'succeeded', '{"score": 9}'), 'succeeded chain/0 t1',
          'parallel: a branch of one task succeeds');
SELECT is(pg_temp.st(:par), 'waiting chain/1 t1 children',
          'parallel: one branch still running: the parent still waits');
SELECT is(pg_temp.run(pg_temp.kid(:par, 1), 'succeeded', '"held"'), 'succeeded chain/1 t1',
          'parallel: the last branch succeeds');
SELECT is(pg_temp.st(:par), 'queued chain/2 t1',
          'parallel: after the last child the parent continues at its next task');
SELECT is(pg_temp.out(:par, 'checks'), '{"fraud": {"score": 9}, "stock": "held"}'::jsonb,
          'parallel: the entry''s output is {"branch": output}');
SELECT is(pg_temp.runs(:par), 'first:succeeded checks:succeeded',
          'parallel: the entry succeeded once');
SELECT ok(NOT EXISTS (SELECT 1 FROM workflow.joins WHERE job_id = :par), 'parallel: the join row is gone');
SELECT is((workflow.get_job(:par) -> 'children'),
          (SELECT jsonb_agg(jsonb_build_object('id', id, 'task', 'checks', 'branch', branch, 'index', child_index,
                                               'workflow', workflow, 'execution', 'succeeded', 'result', result,
                                               'error', NULL) ORDER BY id)
             FROM workflow.jobs WHERE parent_id = :par),
          'get_job: "children", each with id, task, branch, index, workflow, execution, result, error');
SELECT is(jsonb_array_length(workflow.get_job(:par) -> 'children'), 2, 'get_job: both children');
-- the parent's result carries on
SELECT is(pg_temp.run(:par, 'succeeded', '"end"'), 'succeeded chain/2 t1', 'parallel: the parent finishes');

-------------------------------------------------------------------------------
-- fail_fast: a failing branch fails the entry (retried per its attempts)
-- and cancels its siblings
-------------------------------------------------------------------------------

SELECT workflow.create_job('cft_retry') AS rt \gset
SELECT pg_temp.run(:rt, 'wait_step') AS ignore \gset
SELECT pg_temp.run(pg_temp.kid(:rt, 1), 'wait', NULL) AS ignore \gset
SELECT is(pg_temp.st(pg_temp.kid(:rt, 1)), 'waiting chain/0 t1', 'fail_fast: the sibling waits (workflow.wait())');
SELECT is(pg_temp.run(pg_temp.kid(:rt, 0), 'failed', NULL, '{"message": "boom"}'), 'failed chain/0 t1',
          'fail_fast: a branch fails');
SELECT is(pg_temp.kids(:rt), '0:a:failed 1:b:canceled', 'fail_fast: the sibling is canceled');
SELECT is(pg_temp.st(:rt), 'queued chain/0 t2', 'fail_fast: the entry is retried (attempts 2)');
SELECT is((SELECT error ->> 'message' FROM workflow.task_runs WHERE job_id = :rt AND status = 'failed'),
          format('child job %s of entry "checks" (branch "a") failed', pg_temp.kid(:rt, 0)),
          'fail_fast: the entry''s failure names the child');
SELECT is(pg_temp.runs(:rt), 'checks:failed', 'fail_fast: the entry failed once');
-- the second attempt starts new children; the old ones no longer count
SELECT is(pg_temp.run(:rt, 'wait_step'), 'waiting chain/0 t2 children', 'retry: the entry waits again');
SELECT is(pg_temp.kids(:rt), '0:a:failed 1:b:canceled 0:a:queued 1:b:queued', 'retry: new children');
SELECT is(pg_temp.run(pg_temp.kid(:rt, 2), 'succeeded', '1'), 'succeeded chain/0 t1', 'retry: a new child succeeds');
SELECT is(pg_temp.run(pg_temp.kid(:rt, 3), 'succeeded', '2'), 'succeeded chain/0 t1', 'retry: the other too');
SELECT is(pg_temp.st(:rt), 'succeeded chain/0 t2', 'retry: the parent succeeds');
SELECT is((SELECT result FROM workflow.jobs WHERE id = :rt), '{"a": 1, "b": 2}'::jsonb,
          'retry: with the new children''s outputs');

-- no attempts left: the onerror chain runs, once
SELECT workflow.create_job('cft_onerror') AS oe \gset
SELECT pg_temp.run(:oe, 'wait_step') AS ignore \gset
SELECT pg_temp.run(pg_temp.kid(:oe, 1), 'failed', NULL, '{"message": "b broke"}') AS ignore \gset
SELECT is(pg_temp.st(:oe), 'queued onerror/0 t1', 'fail_fast: onerror runs');
SELECT is(pg_temp.kids(:oe), '0:a:canceled 1:b:failed', 'fail_fast: the queued sibling is canceled');
SELECT is(pg_temp.runs(:oe), 'checks:failed', 'fail_fast: one failed run of the entry');
SELECT is(pg_temp.run(:oe, 'succeeded'), 'failed onerror/0 t1', 'onerror ran once and the job failed');

-- a sibling with an oncancel chain (a sub-workflow child): its oncancel runs
SELECT workflow.create_job('cft_each_wf') AS ew \gset
SELECT pg_temp.run(:ew, 'wait_step', '[{"n": 1}, {"n": 2}, 3]') AS ignore \gset
SELECT is(pg_temp.kids(:ew), '0:-:queued 1:-:queued 2:-:queued', 'foreach over a workflow: a child per item');
SELECT is((SELECT string_agg(coalesce(params::text, 'null'), ' ' ORDER BY id) FROM workflow.jobs WHERE parent_id = :ew),
          '{"n": 1} {"n": 2} {}', 'foreach over a workflow: an object item is the params');
SELECT pg_temp.run(pg_temp.kid(:ew, 1), 'wait') AS ignore \gset
SELECT pg_temp.run(pg_temp.kid(:ew, 2), 'failed', NULL, '{"message": "x"}') AS ignore \gset
SELECT is(pg_temp.kids(:ew), '0:-:queued 1:-:queued 2:-:failed',
          'fail_fast: the siblings of a workflow with oncancel are queued to run it');
SELECT is((SELECT string_agg(format('%s/%s', phase, step), ' ' ORDER BY id) FROM workflow.jobs WHERE parent_id = :ew AND execution = 'queued'),
          'oncancel/0 oncancel/0', 'fail_fast: both at oncancel/0 (the oncancel chain)');
SELECT is(pg_temp.st(:ew), 'failed chain/0 t1', 'fail_fast: the parent failed');
SELECT pg_temp.run(pg_temp.kid(:ew, 0), 'succeeded') AS ignore \gset
SELECT is(pg_temp.st(pg_temp.kid(:ew, 0)), 'canceled oncancel/0 t1', 'the sibling is canceled after its oncancel');
SELECT is(pg_temp.runs(:ew), 'notify:failed', 'its end does not touch the parent again');

-- fail_fast false: the other children run on; the entry fails after the last
SELECT workflow.create_job('cft_nofail') AS nf \gset
SELECT pg_temp.run(:nf, 'wait_step') AS ignore \gset
SELECT pg_temp.run(pg_temp.kid(:nf, 0), 'failed', NULL, '{"message": "a broke"}') AS ignore \gset
SELECT is(pg_temp.st(:nf), 'waiting chain/0 t1 children', 'fail_fast false: the parent waits for the others');
SELECT is(pg_temp.kids(:nf), '0:a:failed 1:b:queued', 'fail_fast false: the sibling is not canceled');
SELECT pg_temp.run(pg_temp.kid(:nf, 1), 'succeeded', '2') AS ignore \gset
SELECT is(pg_temp.st(:nf), 'failed chain/0 t1', 'fail_fast false: after the last child the entry fails');
SELECT is((SELECT error -> 'children' FROM workflow.jobs WHERE id = :nf), jsonb_build_array(pg_temp.kid(:nf, 0)),
          'fail_fast false: the error names the children that did not succeed');

-------------------------------------------------------------------------------
-- switch
-------------------------------------------------------------------------------

SELECT workflow.create_job('cft_switch') AS sw1 \gset
SELECT is(pg_temp.run(:sw1, 'wait_step', '"small"'), 'waiting chain/0 t1 children', 'switch: the parent waits');
SELECT is((SELECT format('%s %s', branch, workflow) FROM workflow.jobs WHERE parent_id = :sw1),
          'small cft_switch/route/1', 'switch: one child runs the matching case');
SELECT pg_temp.run(pg_temp.kid(:sw1, 0), 'succeeded', '"by bike"') AS ignore \gset
SELECT is(pg_temp.st(:sw1), 'queued chain/1 t1', 'switch: the parent continues');
SELECT is(pg_temp.out(:sw1, 'route'), '"by bike"'::jsonb, 'switch: the output is the case''s output');

SELECT workflow.create_job('cft_switch') AS sw2 \gset
SELECT pg_temp.run(:sw2, 'wait_step', '"huge"') AS ignore \gset
SELECT is((SELECT format('%s %s', coalesce(branch, 'NULL'), workflow) FROM workflow.jobs WHERE parent_id = :sw2),
          'NULL cft_switch/route/default', 'switch: no case matches: the default runs');

SELECT workflow.create_job('cft_switch_nd') AS sw3 \gset
SELECT is(pg_temp.run(:sw3, 'wait_step', '"huge"'), 'failed chain/0 t1', 'switch: no match and no default fails the task');
SELECT is((SELECT count(*)::integer FROM workflow.jobs WHERE parent_id = :sw3), 0, 'switch: and starts no child');

-------------------------------------------------------------------------------
-- sub-workflow
-------------------------------------------------------------------------------

SELECT workflow.create_job('cft_sub', '{"p": 1}') AS sub \gset
SELECT pg_temp.run(:sub, 'wait_step', '{"n": 5}') AS ignore \gset
SELECT is((SELECT format('%s %s %s %s', workflow, params, execution, root_id = :sub) FROM workflow.jobs WHERE parent_id = :sub),
          'cft_child {"n": 5} queued t', 'sub-workflow: a job of the workflow with the params');
SELECT is((SELECT workflow.job_context(c) -> 'parent' FROM workflow.jobs c WHERE c.parent_id = :sub),
          jsonb_build_object('id', :sub, 'root_id', :sub, 'entry', 'ship', 'index', 0),
          'sub-workflow: its job context names its parent');
SELECT pg_temp.run(pg_temp.kid(:sub, 0), 'succeeded', '"shipped"') AS ignore \gset
SELECT is(pg_temp.out(:sub, 'ship'), '"shipped"'::jsonb, 'sub-workflow: the output is the child''s result');
-- without "params": the parent's params
SELECT pg_temp.run(:sub, 'wait_step') AS ignore \gset
SELECT is((SELECT params FROM workflow.jobs WHERE parent_id = :sub ORDER BY id DESC LIMIT 1), '{"p": 1}'::jsonb,
          'sub-workflow without params: the parent''s params');

-------------------------------------------------------------------------------
-- foreach: concurrency, output in item order, empty list
-------------------------------------------------------------------------------

SELECT workflow.create_job('cft_each') AS fe \gset
SELECT is(pg_temp.run(:fe, 'wait_step', '[10, 20, 30, 40, 50]'), 'waiting chain/0 t1 children', 'foreach: the parent waits');
SELECT is(pg_temp.kids(:fe), '0:-:queued 1:-:queued 2:-:waiting:turn 3:-:waiting:turn 4:-:waiting:turn',
          'foreach, concurrency 2: two children queued, the others wait their turn');
SELECT is(pg_temp.state_of(format('SELECT workflow.resume_job(%s)', pg_temp.kid(:fe, 2))), '55000',
          'resume_job of a child waiting for its turn: 55000');
SELECT is((SELECT workflow.job_context(c) -> 'item' FROM workflow.jobs c WHERE c.id = pg_temp.kid(:fe, 1)), '20'::jsonb,
          'job context of a foreach child: its item');
SELECT pg_temp.run(pg_temp.kid(:fe, 1), 'succeeded', '"b"') AS ignore \gset
SELECT is(pg_temp.kids(:fe), '0:-:queued 1:-:succeeded 2:-:queued 3:-:waiting:turn 4:-:waiting:turn',
          'foreach: an ended child releases the next one');
SELECT pg_temp.run(pg_temp.kid(:fe, 2), 'succeeded', '"c"') AS ignore \gset
SELECT pg_temp.run(pg_temp.kid(:fe, 0), 'succeeded', '"a"') AS ignore \gset
SELECT is(pg_temp.kids(:fe), '0:-:succeeded 1:-:succeeded 2:-:succeeded 3:-:queued 4:-:queued',
          'foreach: one released per end');
SELECT pg_temp.run(pg_temp.kid(:fe, 4), 'succeeded', '"e"') AS ignore \gset
SELECT is(pg_temp.st(:fe), 'waiting chain/0 t1 children', 'foreach: still one child running');
SELECT pg_temp.run(pg_temp.kid(:fe, 3), 'succeeded', '"d"') AS ignore \gset
SELECT is(pg_temp.st(:fe), 'queued chain/1 t1', 'foreach: after the last child the parent continues');
SELECT is(pg_temp.out(:fe, 'notify'), '["a", "b", "c", "d", "e"]'::jsonb, 'foreach: the outputs in item order');

SELECT workflow.create_job('cft_each') AS fe0 \gset
SELECT is(pg_temp.run(:fe0, 'wait_step', '[]'), 'running chain/1 t1', 'foreach over no item: the entry succeeds at once (the runner goes on)');
SELECT is(pg_temp.out(:fe0, 'notify'), '[]'::jsonb, 'foreach over no item: output []');

-------------------------------------------------------------------------------
-- signals
-------------------------------------------------------------------------------

-- wait, then signal
SELECT workflow.create_job('cft_signal') AS sg1 \gset
SELECT is(pg_temp.run(:sg1, 'wait_step', '"cft-k1"'), 'waiting chain/0 t1 signal', 'signal wait: the job waits');
SELECT is((SELECT signal_key FROM workflow.jobs WHERE id = :sg1), 'cft-k1', 'signal wait: on its key');
SELECT is(workflow.signal('cft-k1', '{"ok": true}'), 1, 'signal: one job resumed');
SELECT is(pg_temp.st(:sg1), 'queued chain/1 t1', 'signal: the job continues');
SELECT is(pg_temp.out(:sg1, 'approval'), '{"ok": true}'::jsonb, 'signal: the wait''s output is the payload');
SELECT ok(NOT EXISTS (SELECT 1 FROM workflow.signals WHERE key = 'cft-k1'), 'signal that resumed a job is not kept');

-- signal, then wait
SELECT is(workflow.signal('cft-k2', '"early"'), 0, 'signal before the wait: no job resumed');
SELECT workflow.create_job('cft_signal') AS sg2 \gset
SELECT is(pg_temp.run(:sg2, 'wait_step', '"cft-k2"'), 'running chain/1 t1', 'a kept signal ends the wait at once (the runner goes on)');
SELECT is(pg_temp.out(:sg2, 'approval'), '"early"'::jsonb, 'with its payload');
SELECT ok(NOT EXISTS (SELECT 1 FROM workflow.signals WHERE key = 'cft-k2'), 'the kept signal is taken');

-- another role's signal does not resume a job
SELECT pg_temp.as_role('cft_alice', $$SELECT workflow.create_job('cft_signal')$$)::bigint AS sg3 \gset
SELECT pg_temp.run(:sg3, 'wait_step', '"cft-k3"') AS ignore \gset
SELECT is(pg_temp.as_role('cft_bob', $$SELECT workflow.signal('cft-k3', '"bob"')$$), '0',
          'another role''s signal resumes nothing');
SELECT is(pg_temp.st(:sg3), 'waiting chain/0 t1 signal', 'the job still waits');
SELECT is(pg_temp.as_role('cft_alice', $$SELECT workflow.signal('cft-k3', '"alice"')$$), '1',
          'its creator''s signal resumes it');
SELECT is(pg_temp.out(:sg3, 'approval'), '"alice"'::jsonb, 'with the creator''s payload');
SELECT is((SELECT payload FROM workflow.signals WHERE key = 'cft-k3' AND owner = 'cft_bob'::regrole), '"bob"'::jsonb,
          'the other role''s signal is kept for its own jobs');

-------------------------------------------------------------------------------
-- cancel_job, resume_job, retry_job with parents and children
-------------------------------------------------------------------------------

SELECT workflow.create_job('cft_retry') AS cp \gset
SELECT pg_temp.run(:cp, 'wait_step') AS ignore \gset
UPDATE workflow.jobs SET run_at = now() WHERE id = pg_temp.kid(:cp, 0);
SELECT (workflow.run_job(pg_temp.kid(:cp, 0), 'r1')).lease AS ignore \gset
SELECT is(pg_temp.state_of(format('SELECT workflow.resume_job(%s)', :cp)), '55000',
          'resume_job of a parent waiting for its children: 55000');
SELECT ok(workflow.cancel_job(:cp), 'cancel_job of a parent');
SELECT is(pg_temp.st(:cp), 'canceled chain/0 t1', 'the parent is canceled');
SELECT is(pg_temp.kids(:cp), '0:a:canceled 1:b:canceled', 'its children are canceled, the running one and the queued one');
SELECT is((SELECT string_agg(format('%s:%s', job_id = pg_temp.kid(:cp, 0), status), ' ' ORDER BY id) FROM workflow.task_runs
            WHERE job_id IN (pg_temp.kid(:cp, 0), pg_temp.kid(:cp, 1))),
          't:canceled', 'the running child''s attempt ends as one canceled run');
SELECT is(pg_temp.runs(:cp), '', 'the parent records no failure of its entry');
SELECT is(pg_temp.state_of(format('SELECT workflow.retry_job(%s)', pg_temp.kid(:cp, 0))), '55000',
          'retry_job of a child: 55000');

-------------------------------------------------------------------------------
-- Timeouts reach the children; retry_job of a parent runs again from the
-- entry that did not succeed
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "cft_to", "chain": [
    {"name": "pre", "sql": "select 1"},
    {"name": "par", "parallel": {"a": [{"name": "ta", "sql": "select 1"}],
                                 "b": [{"name": "tb", "sql": "select 1"}]},
     "timeout": "1 min", "attempts": 2}]}') AS ignore \gset

-- the entry's timeout: the children are canceled, the entry is retried
SELECT workflow.create_job('cft_to') AS to1 \gset
SELECT is(pg_temp.run(:to1, 'succeeded', '1'), 'running chain/1 t1',
          'timeout: the runner goes on to the parallel entry');
SELECT is(pg_temp.run(:to1, 'wait_step'), 'waiting chain/1 t1 children', 'timeout: the parent waits for two branches');
SELECT ok((SELECT run_at > now() + interval '59 s' AND run_at <= clock_timestamp() + interval '1 min' FROM workflow.jobs WHERE id = :to1),
          'timeout: its timer is the entry''s timeout');
UPDATE workflow.jobs SET run_at = now() - interval '1 s' WHERE id = :to1;
SELECT is((SELECT handled FROM workflow._sweep_timers(100, '{}')), 1, 'timeout: the sweeper ends the wait');
SELECT is(pg_temp.st(:to1), 'queued chain/1 t2', 'timeout: the entry is queued for its second attempt');
SELECT is(pg_temp.kids(:to1), '0:a:canceled 1:b:canceled', 'timeout: both children are canceled');
SELECT is(pg_temp.runs(:to1), 'pre:succeeded par:failed', 'timeout: one failed run of the entry');
SELECT is(pg_temp.run(:to1, 'wait_step'), 'waiting chain/1 t2 children', 'timeout: the second attempt starts new children');
SELECT is(pg_temp.run(pg_temp.kid(:to1, 2), 'succeeded', '"A"') || ' / ' || pg_temp.run(pg_temp.kid(:to1, 3), 'succeeded', '"B"'),
          'succeeded chain/0 t1 / succeeded chain/0 t1', 'timeout: the new children succeed');
SELECT is(pg_temp.st(:to1), 'succeeded chain/1 t2', 'timeout: and the parent with them');
SELECT is(pg_temp.out(:to1, 'par'), '{"a": "A", "b": "B"}'::jsonb, 'timeout: with the new children''s outputs');

-- the job's timeout: the children are canceled, the job fails
SELECT workflow.create_job('cft_to') AS to2 \gset
SELECT pg_temp.run(:to2, 'succeeded', '1') || pg_temp.run(:to2, 'wait_step') AS ignore \gset
UPDATE workflow.jobs SET deadline = now() - interval '1 s' WHERE id = :to2;
SELECT ok((SELECT handled FROM workflow._sweep_timeouts(100, '{}')) >= 1, 'job timeout: the sweeper times the job out');
SELECT is(pg_temp.st(:to2), 'failed chain/1 t1', 'job timeout: the parent fails');
SELECT is(pg_temp.kids(:to2), '0:a:canceled 1:b:canceled', 'job timeout: its children are canceled');

-- retry_job runs again from the entry that did not succeed
SELECT ok(workflow.retry_job(:to2), 'retry_job of the timed-out parent');
SELECT is(pg_temp.st(:to2), 'queued chain/1 t1', 'retry_job: from the parallel entry, not from the task before it');
SELECT is(pg_temp.run(:to2, 'wait_step'), 'waiting chain/1 t1 children', 'retry_job: new children');
SELECT is(pg_temp.kids(:to2), '0:a:canceled 1:b:canceled 0:a:queued 1:b:queued', 'retry_job: the old ones stay canceled');

SELECT finish();
ROLLBACK;
