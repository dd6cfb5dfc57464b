-- examples/order.sql: the order workflow of the quick start.
--
-- reserve -> payment -> ship, with an onerror branch that releases the
-- reservation.  The in-server runners execute the SQL tasks; the payment
-- task is external: examples/quickstart.sh runs workflow-worker with
-- examples/charge.pl for it.  This script only creates jobs and watches
-- them progress.

\set ON_ERROR_STOP on
\pset footer off

CREATE TABLE public.stock (item text PRIMARY KEY, available int NOT NULL);
CREATE TABLE public.orders (id bigint PRIMARY KEY, item text NOT NULL, amount numeric NOT NULL,
                            state text NOT NULL);
CREATE TABLE public.payments (order_id bigint PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO public.stock VALUES ('book', 10), ('lamp', 1);

-- the application's own function; the reserve task calls it
CREATE FUNCTION public.reserve(p jsonb) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN
    UPDATE stock SET available = available - 1 WHERE item = p->>'item' AND available > 0;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'out of stock: %', p->>'item';
    END IF;
    INSERT INTO orders VALUES ((p->>'order')::bigint, p->>'item', (p->>'amount')::numeric, 'reserved');
    RETURN (p->>'order')::bigint;
END $f$;

SELECT workflow.create_workflow($${
  "name": "order",
  "chain": [
    {"name": "reserve", "sql": "select reserve($1->'job'->'params')"},
    {"name": "payment", "task_type": "payment",
     "attempts": 2, "backoff": "fixed", "delay": "100 ms", "timeout": "30 s"},
    {"name": "ship",
     "sql": "insert into payments values (($1->'results'->'payment'->>'order')::bigint, ($1->'results'->'payment'->>'charged')::numeric); update orders set state = 'shipped' where id = ($1->'results'->>'reserve')::bigint returning state"}
  ],
  "onerror": [
    {"name": "release",
     "sql": "update orders set state = 'released' where id = ($1->'job'->'params'->>'order')::bigint"}
  ],
  "timeout": "1 min"
}$$::jsonb) AS version;

-- an application creates jobs inside its own transactions; each commit wakes a runner
BEGIN;
SELECT workflow.create_job('order', '{"order": 1, "item": "book", "amount": 20}');
SELECT workflow.create_job('order', '{"order": 2, "item": "lamp", "amount": 90}');
SELECT workflow.create_job('order', '{"order": 3, "item": "lamp", "amount": 40}');
SELECT workflow.create_job('order', '{"order": 4, "item": "book", "amount": 900}');
COMMIT;

-- watch them: wait (at most 30 s) until every job has finished
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM workflow.jobs WHERE execution IN ('queued', 'running', 'waiting'));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

\echo
\echo 'jobs:'
SELECT id, params->>'order' AS "order", execution, result, error->>'message' AS error
  FROM workflow.jobs ORDER BY id;
\echo 'what the tasks did:'
SELECT * FROM public.orders ORDER BY id;
SELECT * FROM public.payments ORDER BY order_id;
\echo 'every task attempt of job 4 (the worker declined the payment twice, then the onerror chain):'
SELECT phase, task, attempt, status, runner_id, output, btrim(error->>'message', E'\n') AS error
  FROM workflow.task_runs WHERE job_id = 4 ORDER BY id;
\echo 'the runners:'
SELECT id, kind, alive, idle FROM workflow.runner_status ORDER BY id;
SELECT workflow, execution, jobs FROM workflow.job_summary ORDER BY 1, 2;
