-- examples/order_flow.sql: the quick start's order workflow with control
-- flow (run by examples/quickstart.sh after order.sql, whose tables it
-- uses).
--
-- reserve, then the fraud and stock checks in parallel; a big order waits
-- for a manual approval, signalled by a trigger when a row of
-- public.approvals is inserted (committed together with it); shipping is a
-- workflow of its own, started as a sub-workflow; each item of the order
-- is notified through a foreach.  Every task is SQL: the runners do it all.

\set ON_ERROR_STOP on
\pset footer off

CREATE TABLE public.flow_orders (id bigint PRIMARY KEY, items jsonb NOT NULL, total numeric NOT NULL,
                                 state text NOT NULL DEFAULT 'new');
CREATE TABLE public.approvals (order_id bigint PRIMARY KEY, approver text NOT NULL);
CREATE TABLE public.notifications (order_id bigint, item text, PRIMARY KEY (order_id, item));

-- the approval: an insert signals the job waiting on "approve-<order>"
CREATE FUNCTION public.approved() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM workflow.signal('approve-' || NEW.order_id, jsonb_build_object('by', NEW.approver));
    RETURN NULL;
END $f$;
CREATE TRIGGER approved AFTER INSERT ON public.approvals
    FOR EACH ROW EXECUTE FUNCTION public.approved();

SELECT workflow.create_workflow($${
  "name": "shipping",
  "chain": [
    {"name": "label", "sql": "update flow_orders set state = 'shipped' where id = ($1->'job'->'params'->>'order')::bigint returning 'LABEL-' || id"}
  ]
}$$::jsonb) AS shipping_version;

SELECT workflow.create_workflow($${
  "name": "order_flow",
  "chain": [
    {"name": "reserve", "sql": "insert into flow_orders (id, items, total) values (($1->'job'->'params'->>'order')::bigint, $1->'job'->'params'->'items', ($1->'job'->'params'->>'total')::numeric) returning id"},
    {"name": "checks", "parallel": {
       "fraud": [{"name": "fraud_check", "sql": "select ($1->'job'->'params'->>'total')::numeric < 10000"}],
       "stock": [{"name": "stock_check", "sql": "select count(*) = jsonb_array_length($1->'job'->'params'->'items') from jsonb_array_elements_text($1->'job'->'params'->'items') i join stock s on s.item = i and s.available > 0"}]}},
    {"name": "route",
     "switch": "select case when ($1->'job'->'params'->>'total')::numeric > 500 then 'big' else 'small' end",
     "cases": {"big":   [{"name": "approval", "wait": "signal", "key": "select 'approve-' || ($1->'job'->'params'->>'order')", "timeout": "1 day"}],
               "small": [{"name": "auto_approve", "sql": "select jsonb_build_object('by', 'rules')"}]}},
    {"name": "ship", "workflow": "shipping", "params": "select jsonb_build_object('order', $1->'job'->'params'->'order')"},
    {"name": "notify", "foreach": "select jsonb_array_elements_text($1->'job'->'params'->'items')",
     "do": [{"name": "send", "sql": "insert into notifications values (($1->'job'->'params'->>'order')::bigint, $1->>'item') returning 'notified ' || item"}],
     "concurrency": 2}
  ],
  "timeout": "1 min"
}$$::jsonb) AS order_flow_version;

\echo 'the order_flow workflow, as a Mermaid diagram (workflow.diagram):'
\pset format unaligned
\pset tuples_only on
SELECT workflow.diagram('order_flow');
\pset format aligned
\pset tuples_only off

SELECT workflow.create_job('order_flow', '{"order": 101, "items": ["book", "lamp"], "total": 120}') AS small_order \gset
SELECT workflow.create_job('order_flow', '{"order": 102, "items": ["book"], "total": 900}') AS big_order \gset

-- wait (at most 30 s) until the big order waits for its approval
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM workflow.jobs WHERE signal_key = 'approve-102');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
\echo 'the big order waits for approval; an approver inserts a row, and its trigger signals the job:'
INSERT INTO public.approvals VALUES (102, 'alice');

-- wait (at most 30 s) until both jobs have finished
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM workflow.jobs
                               WHERE root_id IN (SELECT id FROM workflow.jobs WHERE workflow = 'order_flow')
                                 AND execution IN ('queued', 'running', 'waiting'));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

\echo 'the order_flow jobs:'
SELECT id, params->>'order' AS "order", execution, result FROM workflow.jobs
 WHERE workflow = 'order_flow' ORDER BY id;
\echo 'what each entry of the big order gave:'
SELECT task, status, output FROM workflow.task_runs WHERE job_id = :big_order ORDER BY id;
\echo 'its child jobs:'
SELECT id, workflow, parent_task, branch, child_index, execution, result FROM workflow.jobs
 WHERE root_id = :big_order AND parent_id IS NOT NULL ORDER BY id;
SELECT * FROM public.flow_orders ORDER BY id;
SELECT * FROM public.notifications ORDER BY order_id, item;
