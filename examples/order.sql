-- examples/order.sql: the order workflow of the quick start.
--
-- reserve -> payment -> ship, with an onerror branch that releases the
-- reservation.  Until the in-server runners execute it, this script plays
-- the runner itself through the node-workflow protocol (next_jobs, run_job,
-- finish_job) so every step is visible.

\set ON_ERROR_STOP on
\pset footer off

CREATE TABLE IF NOT EXISTS public.orders (
    id      bigint PRIMARY KEY,
    item    text NOT NULL,
    state   text NOT NULL
);

SELECT workflow.create_workflow($${
  "name": "order",
  "chain": [
    {"name": "reserve", "sql": "insert into public.orders values (($1->'job'->'params'->>'order')::bigint, $1->'job'->'params'->>'item', 'reserved') returning to_jsonb(orders.*)"},
    {"name": "payment", "task_type": "payment", "attempts": 3, "backoff": "exponential", "delay": "1 s"},
    {"name": "ship", "sql": "update public.orders set state = 'shipped' where id = ($1->'job'->'params'->>'order')::bigint returning state"}
  ],
  "onerror": [
    {"name": "release", "sql": "update public.orders set state = 'released' where id = ($1->'job'->'params'->>'order')::bigint"}
  ],
  "timeout": "10 min"
}$$::jsonb) AS version;

-- an application creates jobs inside its own transactions
SELECT workflow.create_job('order', '{"order": 1001, "item": "book"}', target => 'customer-7') AS job \gset

-- a runner asks for work and claims it (FOR UPDATE SKIP LOCKED)
SELECT * FROM workflow.next_jobs(0, 9);
SELECT id, workflow, execution, runner_id FROM workflow.run_job(:job, 'quickstart-runner');

-- ... runs it, and reports the outcome with a guarded transition
SELECT id, execution, result FROM workflow.finish_job(:job, 'quickstart-runner', 'succeeded', '{"shipped": true}');

-- the whole story of the job
SELECT jsonb_pretty(workflow.get_job(:job) - 'tasks' - 'info') AS job;
SELECT workflow, execution, jobs FROM workflow.job_summary ORDER BY 1, 2;
