--
-- Workflow diagrams: workflow._diagram (every kind of entry, nesting,
-- handlers, escaping, states; Mermaid and dot), workflow.diagram of stored
-- workflows, workflow.job_diagram of jobs with task runs and child jobs
-- written by hand, the errors, and who may see what.
--
-- Every workflow created here is named diag_*; the file drops them all at
-- the end.  Job ids are never printed.
--
\set SHOW_CONTEXT never
-- diagrams print as they are: one output line per diagram line
\pset format unaligned
\pset tuples_only on

-------------------------------------------------------------------------------
-- _diagram: a plain chain (SQL, external, timer and signal waits, names
-- with "-" and "."): one node each, in order, between start and end
-------------------------------------------------------------------------------

\set plain '{"name": "diag_plain", "chain": [{"name": "reserve", "sql": "select 1"}, {"name": "pay", "task_type": "payment"}, {"name": "cool-down", "wait": "10 min"}, {"name": "cool.more", "wait": 90}, {"name": "confirm", "wait": "signal", "key": "select 1"}, {"name": "ship.v2-final", "sql": "select 2"}]}'
SELECT workflow._diagram(:'plain', NULL, 'mermaid');
SELECT workflow._diagram(:'plain', NULL, 'dot');

-- an empty chain: start, then end
SELECT workflow._diagram('{"name": "diag_empty", "chain": []}', NULL, 'mermaid');

-------------------------------------------------------------------------------
-- parallel: fork, one path per branch labelled with its name (jsonb key
-- order: "none", "fraud", "stock"; an empty branch goes straight to the
-- join), join
-------------------------------------------------------------------------------

\set par '{"name": "diag_par", "chain": [{"name": "checks", "fail_fast": true, "parallel": {"stock": [{"name": "check_stock", "sql": "select 1"}], "fraud": [{"name": "score", "task_type": "fraud"}, {"name": "review", "wait": "1 hour"}], "none": []}}, {"name": "done", "sql": "select 1"}]}'
SELECT workflow._diagram(:'par', NULL, 'mermaid');
SELECT workflow._diagram(:'par', NULL, 'dot');

-------------------------------------------------------------------------------
-- switch: a decision, one path per case labelled with its value, default
-- last, then the join
-------------------------------------------------------------------------------

\set sw '{"name": "diag_switch", "chain": [{"name": "route", "switch": "select $1->''job''->''params''->>''country''", "cases": {"US": [{"name": "us_ship", "task_type": "ups"}], "FR": [{"name": "fr_ship", "sql": "select 1"}, {"name": "fr_track", "sql": "select 1"}]}, "default": [{"name": "intl_ship", "sql": "select 1"}]}]}'
SELECT workflow._diagram(:'sw', NULL, 'mermaid');
SELECT workflow._diagram(:'sw', NULL, 'dot');

-------------------------------------------------------------------------------
-- sub-workflows (with and without a version): subroutine nodes
-------------------------------------------------------------------------------

\set sub '{"name": "diag_sub", "chain": [{"name": "ship", "workflow": "shipping", "version": 3, "params": "select $1"}, {"name": "bill", "workflow": "billing"}]}'
SELECT workflow._diagram(:'sub', NULL, 'mermaid');
SELECT workflow._diagram(:'sub', NULL, 'dot');

-------------------------------------------------------------------------------
-- foreach: with a do chain (a node with its concurrency, the chain in a
-- subgraph), and with a workflow per item (one subroutine node)
-------------------------------------------------------------------------------

\set each '{"name": "diag_each", "chain": [{"name": "notify", "foreach": "select 1", "concurrency": 10, "do": [{"name": "render", "sql": "select 1"}, {"name": "send", "task_type": "mail"}]}, {"name": "archive", "foreach": "select 1", "do": {"workflow": "archiver", "version": 2}}]}'
SELECT workflow._diagram(:'each', NULL, 'mermaid');
SELECT workflow._diagram(:'each', NULL, 'dot');

-------------------------------------------------------------------------------
-- nesting (a parallel inside a case of a switch) and the onerror and
-- oncancel chains: the main chain in a subgraph of its own, each handler
-- in another, reached by a dashed edge
-------------------------------------------------------------------------------

\set nested '{"name": "diag_nested", "chain": [{"name": "prepare", "sql": "select 1"}, {"name": "route", "switch": "select 1", "cases": {"big": [{"name": "split", "parallel": {"a": [{"name": "part_a", "sql": "select 1"}], "b": [{"name": "part_b", "task_type": "parts"}]}}, {"name": "merge", "sql": "select 1"}], "small": [{"name": "whole", "sql": "select 1"}]}}], "onerror": [{"name": "undo", "sql": "select 1"}, {"name": "alert", "task_type": "pager"}], "oncancel": [{"name": "release", "sql": "select 1"}]}'
SELECT workflow._diagram(:'nested', NULL, 'mermaid');
SELECT workflow._diagram(:'nested', NULL, 'dot');

-------------------------------------------------------------------------------
-- escaping: names, branch names and case values are labels only, whatever
-- their characters (quotes, brackets, "#", "&", "<", "|", backquote,
-- backslash, a newline); ids stay n<k>
-------------------------------------------------------------------------------

SELECT $${"name": "diag_esc", "chain": [{"name": "q\"]; n0 --> n1 %% x", "sql": "select 1"}, {"name": "pick", "switch": "select 1", "cases": {"say \"hi\"": [{"name": "a-1.b", "sql": "select 1"}], "<b>#1 & |x|</b> `y`": [{"name": "c{d}", "sql": "select 1"}], "back\\slash\nline": []}}]}$$ AS esc \gset
SELECT workflow._diagram(:'esc', NULL, 'mermaid');
SELECT workflow._diagram(:'esc', NULL, 'dot');

-------------------------------------------------------------------------------
-- states: by node path "<phase>/<entry name>" at any depth; a string or
-- {"state", "label"}; a known state colours its node (Mermaid: a class,
-- defined once, only for the states used; dot: fill and border), any other
-- is a label only; paths of no node are ignored
-------------------------------------------------------------------------------

\set states '{"chain/prepare": "succeeded", "chain/route": "waiting", "chain/part_a": "running", "chain/part_b": {"state": "failed", "label": "failed after 2 attempts"}, "chain/whole": "skipped", "onerror/undo": "queued", "oncancel/release": "canceled", "chain/nothing": "succeeded"}'
SELECT workflow._diagram(:'nested', :'states', 'mermaid');
SELECT workflow._diagram(:'nested', :'states', 'dot');
-- a JSON null is no states
SELECT workflow._diagram(:'sub', 'null', 'mermaid') = workflow._diagram(:'sub', NULL, 'mermaid') AS same;

-------------------------------------------------------------------------------
-- _diagram errors
-------------------------------------------------------------------------------

SELECT workflow._diagram(:'plain', NULL, 'svg');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow._diagram(:'plain', NULL, 'Mermaid');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow._diagram(:'plain', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow._diagram('[]', NULL, 'dot');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow._diagram(:'plain', '["chain/reserve"]', 'dot');
\echo :LAST_ERROR_SQLSTATE
-- no definition, no diagram
SELECT workflow._diagram(NULL, NULL, 'dot') IS NULL AS no_diagram;

-------------------------------------------------------------------------------
-- diagram(): the latest version of a stored workflow, or the one given
-------------------------------------------------------------------------------

SELECT workflow.create_workflow('{"name": "diag_order", "chain": [{"name": "reserve", "sql": "select 1"}, {"name": "pay", "task_type": "payment"}], "onerror": [{"name": "undo", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "diag_order", "chain": [{"name": "reserve", "sql": "select 1"}, {"name": "pay", "task_type": "payment"}, {"name": "ship", "sql": "select 1"}], "onerror": [{"name": "undo", "sql": "select 1"}]}');
SELECT workflow.diagram('diag_order');
SELECT workflow.diagram('diag_order', 1);
SELECT workflow.diagram('diag_order', format => 'dot') = workflow._diagram(definition, NULL, 'dot') AS same_as_definition
  FROM workflow.workflows WHERE name = 'diag_order' AND version = 2;

-- unknown workflow or version: 42704; NULL name or format: 22004; another
-- format: 22023
SELECT workflow.diagram('diag_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.diagram('diag_order', 3);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.diagram(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.diagram('diag_order', format => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.diagram('diag_order', format => 'png');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- job_diagram(): the states of one job's current attempt
-------------------------------------------------------------------------------

SELECT workflow.create_job('diag_order', version => 2) AS job \gset
-- a new job: its first task is queued
SELECT workflow.job_diagram(:job);
-- reserve succeeded; pay failed once and runs again; a run of another
-- attempt of the job does not count
INSERT INTO workflow.task_runs (job_id, job_attempt, phase, step, task, attempt, status, started_at)
VALUES (:job, 1, 'chain', 0, 'reserve', 1, 'succeeded', now()),
       (:job, 1, 'chain', 1, 'pay', 1, 'failed', now()),
       (:job, 2, 'chain', 2, 'ship', 1, 'succeeded', now());
UPDATE workflow.jobs SET execution = 'running', step = 1, task_attempt = 2 WHERE id = :job;
SELECT workflow.job_diagram(:job);
-- pay failed for good, the onerror chain ran and the job failed: an ended
-- job shows no current task
INSERT INTO workflow.task_runs (job_id, job_attempt, phase, step, task, attempt, status, started_at)
VALUES (:job, 1, 'chain', 1, 'pay', 2, 'failed', now()),
       (:job, 1, 'onerror', 0, 'undo', 1, 'succeeded', now());
UPDATE workflow.jobs SET execution = 'failed', phase = 'onerror', step = 0 WHERE id = :job;
SELECT workflow.job_diagram(:job, 'dot');

-- unknown job: 42704; NULL id or format: 22004; another format: 22023
SELECT workflow.job_diagram(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.job_diagram(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.job_diagram(:job, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.job_diagram(:job, 'svg');
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- job_diagram() of a job with child jobs.  No runner executes anything
-- here: the definition, the jobs and their task runs are written by hand.
-------------------------------------------------------------------------------

INSERT INTO workflow.workflows (name, version, definition, owner, max_attempts, initial_delay, max_delay, search_path)
VALUES ('diag_flow', 1, $${"name": "diag_flow", "chain": [
    {"name": "reserve", "sql": "select 1"},
    {"name": "checks", "parallel": {"stock": [{"name": "check_stock", "sql": "select 1"},
                                              {"name": "hold", "sql": "select 1"}],
                                    "fraud": [{"name": "score", "task_type": "fraud"}]}},
    {"name": "route", "switch": "select 'eu'", "cases": {"eu": [{"name": "eu_ship", "sql": "select 1"}]},
     "default": [{"name": "other_ship", "sql": "select 1"}]},
    {"name": "notify", "foreach": "select 1", "concurrency": 2,
     "do": [{"name": "render", "sql": "select 1"}, {"name": "send", "task_type": "mail"}]},
    {"name": "invoice", "workflow": "diag_order"},
    {"name": "archive", "foreach": "select 1", "do": {"workflow": "diag_order"}}]}$$,
        current_user::regrole, 1, '1 s', '5 min', 'public')
RETURNING id AS flow \gset

-- job A is at notify (step 3), waiting for its items
INSERT INTO workflow.jobs (workflow_id, workflow, version, execution, phase, step, created_by)
VALUES (:flow, 'diag_flow', 1, 'waiting', 'chain', 3, current_user::regrole)
RETURNING id AS a \gset
INSERT INTO workflow.task_runs (job_id, job_attempt, phase, step, task, attempt, status, started_at)
VALUES (:a, 1, 'chain', 0, 'reserve', 1, 'succeeded', now()),
       (:a, 1, 'chain', 1, 'checks', 1, 'succeeded', now()),
       (:a, 1, 'chain', 2, 'route', 1, 'succeeded', now());
-- its children: stock; fraud twice (the latest one counts); the case eu;
-- three items of notify (one done, one at send, one not started)
INSERT INTO workflow.jobs (workflow_id, workflow, version, execution, phase, step, created_by,
                           parent_id, root_id, parent_task, branch, child_index)
VALUES (:flow, 'diag_flow', 1, 'succeeded', 'chain', 1, current_user::regrole, :a, :a, 'checks', 'stock', 0),
       (:flow, 'diag_flow', 1, 'failed', 'chain', 0, current_user::regrole, :a, :a, 'checks', 'fraud', 1),
       (:flow, 'diag_flow', 1, 'succeeded', 'chain', 0, current_user::regrole, :a, :a, 'checks', 'fraud', 1),
       (:flow, 'diag_flow', 1, 'succeeded', 'chain', 0, current_user::regrole, :a, :a, 'route', 'eu', 0),
       (:flow, 'diag_flow', 1, 'succeeded', 'chain', 1, current_user::regrole, :a, :a, 'notify', NULL, 0),
       (:flow, 'diag_flow', 1, 'running', 'chain', 1, current_user::regrole, :a, :a, 'notify', NULL, 1),
       (:flow, 'diag_flow', 1, 'queued', 'chain', 0, current_user::regrole, :a, :a, 'notify', NULL, 2);
INSERT INTO workflow.task_runs (job_id, job_attempt, phase, step, task, attempt, status, started_at)
SELECT c.id, 1, 'chain', t.step, t.task, 1, t.status, now()
  FROM workflow.jobs c
  JOIN (VALUES ('checks', 'stock', 0, 0, 'check_stock', 'succeeded'),
               ('checks', 'stock', 0, 1, 'hold', 'succeeded'),
               ('route', 'eu', 0, 0, 'eu_ship', 'succeeded'),
               ('notify', NULL, 0, 0, 'render', 'succeeded'),
               ('notify', NULL, 0, 1, 'send', 'succeeded'),
               ('notify', NULL, 1, 0, 'render', 'succeeded'))
       AS t(parent_task, branch, child_index, step, task, status)
    ON c.parent_task = t.parent_task AND c.branch IS NOT DISTINCT FROM t.branch
   AND c.child_index = t.child_index
 WHERE c.parent_id = :a;
INSERT INTO workflow.task_runs (job_id, job_attempt, phase, step, task, attempt, status, started_at)
SELECT c.id, 1, 'chain', 0, 'score', 1, CASE c.execution WHEN 'failed' THEN 'failed' ELSE 'succeeded' END, now()
  FROM workflow.jobs c WHERE c.parent_id = :a AND c.branch = 'fraud';
SELECT workflow.job_diagram(:a);

-- a branch's child job: the diagram of its branch
SELECT id AS stock FROM workflow.jobs WHERE parent_id = :a AND branch = 'stock' \gset
SELECT workflow.job_diagram(:stock);

-- job B is at archive (step 5): its sub-workflow invoice succeeded; each
-- item of archive is a job of diag_order, counted on the archive node
INSERT INTO workflow.jobs (workflow_id, workflow, version, execution, phase, step, created_by)
VALUES (:flow, 'diag_flow', 1, 'waiting', 'chain', 5, current_user::regrole)
RETURNING id AS b \gset
INSERT INTO workflow.jobs (workflow_id, workflow, version, execution, created_by,
                           parent_id, root_id, parent_task, child_index)
SELECT w.id, w.name, w.version, c.execution::workflow.execution, current_user::regrole, :b, :b, c.task, c.i
  FROM workflow.workflows w,
       (VALUES ('invoice', 0, 'succeeded'), ('archive', 0, 'succeeded'),
               ('archive', 1, 'failed'), ('archive', 2, 'succeeded')) AS c(task, i, execution)
 WHERE w.name = 'diag_order' AND w.version = 2;
SELECT workflow.job_diagram(:b);
-- the sub-workflow's child job: its own workflow's diagram
SELECT id AS inv FROM workflow.jobs WHERE parent_id = :b AND parent_task = 'invoice' \gset
SELECT workflow.job_diagram(:inv) = workflow.diagram('diag_order') AS own_workflow;

-------------------------------------------------------------------------------
-- Who may see what: every workflow_user may draw every workflow; a job
-- only by its creator (and administrators); another role's job does not
-- exist for it
-------------------------------------------------------------------------------

CREATE ROLE diag_alice LOGIN IN ROLE workflow_user;
CREATE ROLE diag_bob LOGIN IN ROLE workflow_user;
SET ROLE diag_alice;
SELECT workflow.create_job('diag_order') AS alice_job \gset
SELECT workflow.job_diagram(:alice_job);
-- (the implementation is no user's to call)
SELECT workflow._diagram('diag_order', NULL, 'mermaid', 'diag_alice'::regrole::oid);
\echo :LAST_ERROR_SQLSTATE
SET ROLE diag_bob;
SELECT workflow.diagram('diag_order') IS NOT NULL AS bob_draws;
\set VERBOSITY sqlstate
SELECT workflow.job_diagram(:alice_job);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- an administrator sees it
SELECT workflow.job_diagram(:alice_job) IS NOT NULL AS admin_sees;

-------------------------------------------------------------------------------
-- cleanup
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow('diag_flow', force => true);
SELECT workflow.drop_workflow('diag_order', force => true);
SELECT count(*) AS left_over FROM workflow.jobs WHERE workflow LIKE 'diag\_%';
DROP ROLE diag_alice;
DROP ROLE diag_bob;
