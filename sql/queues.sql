--
-- Queues: create_queue, alter_queue and drop_queue with every bad input and
-- its SQLSTATE, the "queue" and "concurrency_key" fields of definitions,
-- create_job's queue argument, the concurrency key computed at job creation,
-- and the workflow.queue_status view.
--
-- No runner executes jobs in this instance: jobs are claimed with run_job
-- and finished with finish_job.  Errors are shown as "SQLSTATE: message"
-- by pg_temp.err.  Queues and workflows are named q_*; the file drops them
-- at the end.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 3001 whatever ran before, so that the error
-- messages that name a job are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 3001, false) AS first_job_id;

-- run a statement: 'ok', or its error as "SQLSTATE: message"
CREATE FUNCTION pg_temp.err(stmt text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s   text;
    m   text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
    RETURN s || ': ' || m;
END
$$;

-------------------------------------------------------------------------------
-- create_queue
-------------------------------------------------------------------------------

SELECT workflow.create_queue('q_plain');
SELECT workflow.create_queue('q_slow', concurrency => 2);
SELECT workflow.create_queue('q_all', 3, 10, '1 minute', 1);
SELECT workflow.create_queue('q.rate-1', rate_limit => 1000000, rate_interval => '1 millisecond');
SELECT name, concurrency, rate_limit, rate_interval, key_concurrency, tokens, tokens_at
  FROM workflow.queues ORDER BY name;

-- every bad argument
SELECT pg_temp.err(c) AS create_queue
  FROM (VALUES
    ($$SELECT workflow.create_queue(NULL)$$),
    ($$SELECT workflow.create_queue('')$$),
    ($$SELECT workflow.create_queue('has space')$$),
    ($$SELECT workflow.create_queue(repeat('q', 129))$$),
    ($$SELECT workflow.create_queue('q_bad', concurrency => 0)$$),
    ($$SELECT workflow.create_queue('q_bad', concurrency => -1)$$),
    ($$SELECT workflow.create_queue('q_bad', concurrency => 1000001)$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => 0)$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => -5)$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => 1000001)$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => 1, rate_interval => '0')$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => 1, rate_interval => '0.5 ms')$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => 1, rate_interval => '2 days')$$),
    ($$SELECT workflow.create_queue('q_bad', rate_limit => 1, rate_interval => '-1 s')$$),
    ($$SELECT workflow.create_queue('q_bad', rate_interval => NULL)$$),
    ($$SELECT workflow.create_queue('q_bad', key_concurrency => 0)$$),
    ($$SELECT workflow.create_queue('q_bad', key_concurrency => 1000001)$$),
    ($$SELECT workflow.create_queue('q_slow')$$),
    ($$SELECT workflow.create_queue('default')$$),
    ($$SELECT workflow.create_queue('default', concurrency => 5)$$)
  ) v(c);
-- none of them left a row
SELECT name FROM workflow.queues ORDER BY name;

-- the bounds themselves are accepted
SELECT workflow.create_queue('q_bounds', 1000000, 1000000, '1 day', 1000000);
SELECT workflow.create_queue('q_low', 1, 1, '1 millisecond', 1);
SELECT name, concurrency, rate_limit, rate_interval, key_concurrency
  FROM workflow.queues WHERE name IN ('q_bounds', 'q_low') ORDER BY name;

-------------------------------------------------------------------------------
-- alter_queue: NULL keeps a limit, 0 removes it
-------------------------------------------------------------------------------

SELECT workflow.alter_queue('q_all', concurrency => 5);
SELECT concurrency, rate_limit, rate_interval, key_concurrency FROM workflow.queues WHERE name = 'q_all';
SELECT workflow.alter_queue('q_all', rate_interval => '1 hour', key_concurrency => 0);
SELECT concurrency, rate_limit, rate_interval, key_concurrency FROM workflow.queues WHERE name = 'q_all';
SELECT workflow.alter_queue('q_all', 0, 0);
SELECT concurrency, rate_limit, rate_interval, key_concurrency FROM workflow.queues WHERE name = 'q_all';
SELECT workflow.alter_queue('q_all', rate_limit => 7);
SELECT concurrency, rate_limit, rate_interval, key_concurrency FROM workflow.queues WHERE name = 'q_all';

-- "default" exists without a row; it gets one when it gets limits
SELECT count(*) FROM workflow.queues WHERE name = 'default';
SELECT workflow.alter_queue('default', concurrency => 50);
SELECT concurrency, rate_limit, key_concurrency FROM workflow.queues WHERE name = 'default';
SELECT workflow.alter_queue('default', 0, 0, NULL, 0);
SELECT concurrency, rate_limit, key_concurrency FROM workflow.queues WHERE name = 'default';

SELECT pg_temp.err(c) AS alter_queue
  FROM (VALUES
    ($$SELECT workflow.alter_queue(NULL, 1)$$),
    ($$SELECT workflow.alter_queue('bad name', 1)$$),
    ($$SELECT workflow.alter_queue('q_nope', 1)$$),
    ($$SELECT workflow.alter_queue('q_all', concurrency => -1)$$),
    ($$SELECT workflow.alter_queue('q_all', concurrency => 1000001)$$),
    ($$SELECT workflow.alter_queue('q_all', rate_limit => -1)$$),
    ($$SELECT workflow.alter_queue('q_all', rate_limit => 1000001)$$),
    ($$SELECT workflow.alter_queue('q_all', rate_interval => '0')$$),
    ($$SELECT workflow.alter_queue('q_all', rate_interval => '2 days')$$),
    ($$SELECT workflow.alter_queue('q_all', key_concurrency => -1)$$),
    ($$SELECT workflow.alter_queue('q_all', key_concurrency => 1000001)$$)
  ) v(c);
-- unchanged
SELECT concurrency, rate_limit, rate_interval, key_concurrency FROM workflow.queues WHERE name = 'q_all';

-------------------------------------------------------------------------------
-- Definitions: "queue" and "concurrency_key"
-------------------------------------------------------------------------------

SELECT workflow.create_workflow($${"name": "q_wf", "queue": "q_slow",
  "concurrency_key": "select $1 -> 'job' -> 'params' ->> 'tenant'",
  "chain": [{"name": "a", "sql": "select 1"}]}$$);
SELECT workflow.create_workflow('{"name": "q_plainwf", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT name, queue, concurrency_key FROM workflow.workflows WHERE name IN ('q_wf', 'q_plainwf') ORDER BY name;

SELECT pg_temp.err(c) AS create_workflow
  FROM (VALUES
    ($${"name": "q_bad", "queue": "q_nope", "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "queue": "bad name", "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "queue": 7, "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "queue": "", "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "concurrency_key": "", "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "concurrency_key": 42, "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "concurrency_key": "create table q_t (a int)", "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "concurrency_key": "select 'a'; select 'b'", "chain": [{"name": "a", "sql": "select 1"}]}$$),
    ($${"name": "q_bad", "concurrency_key": "selec 'a'", "chain": [{"name": "a", "sql": "select 1"}]}$$)
  ) v(d)
  CROSS JOIN LATERAL (SELECT format('SELECT workflow.create_workflow(%L)', d) AS c) s;
SELECT count(*) FROM workflow.workflows WHERE name = 'q_bad';

-------------------------------------------------------------------------------
-- create_job: the queue and the concurrency key of a job
-------------------------------------------------------------------------------

-- the workflow's queue, and the key computed from the params
SELECT workflow.create_job('q_wf', '{"tenant": "acme"}') AS j1 \gset
SELECT queue, concurrency_key FROM workflow.jobs WHERE id = :j1;
-- a key query returning NULL or no row: no key
SELECT workflow.create_job('q_wf', '{}') AS j2 \gset
SELECT queue, concurrency_key FROM workflow.jobs WHERE id = :j2;
-- create_job's queue overrides the workflow's
SELECT workflow.create_job('q_wf', '{"tenant": "beta"}', queue => 'q_plain') AS j3 \gset
SELECT queue, concurrency_key FROM workflow.jobs WHERE id = :j3;
SELECT workflow.create_job('q_plainwf', queue => 'q_all') AS j4 \gset
SELECT workflow.create_job('q_plainwf', queue => 'default') AS j5 \gset
SELECT workflow.create_job('q_plainwf') AS j6 \gset
SELECT id = :j4 AS j4, queue, concurrency_key FROM workflow.jobs WHERE id IN (:j4, :j5, :j6) ORDER BY id;

-- create_jobs: the workflow's queue, or the one given, and a key per job
SELECT array_agg(id) AS bulk
  FROM (SELECT workflow.create_jobs('q_wf', ARRAY['{"tenant": "t1"}', '{"tenant": "t2"}']::jsonb[])
        UNION ALL
        SELECT workflow.create_jobs('q_wf', ARRAY['{"tenant": "t3"}']::jsonb[], queue => 'q_plain')) b(id) \gset
SELECT queue, concurrency_key FROM workflow.jobs WHERE id = ANY (:'bulk') ORDER BY id;

SELECT pg_temp.err(c) AS create_job
  FROM (VALUES
    ($$SELECT workflow.create_jobs('q_plainwf', ARRAY['{}']::jsonb[], queue => 'q_nope')$$),
    ($$SELECT workflow.create_job('q_plainwf', queue => 'q_nope')$$),
    ($$SELECT workflow.create_job('q_wf', queue => 'q_nope')$$),
    ($$SELECT workflow.create_job('q_plainwf', queue => 'bad name')$$)
  ) v(c);

-- a key query that writes is refused: it runs read-only
CREATE TABLE public.q_keys (k text);
SELECT workflow.create_workflow($${"name": "q_writer",
  "concurrency_key": "with w as (insert into public.q_keys values ('x') returning k) select k from w",
  "chain": [{"name": "a", "sql": "select 1"}]}$$);
SELECT pg_temp.err($$SELECT workflow.create_job('q_writer')$$) AS writing_key;
SELECT count(*) AS keys_written FROM public.q_keys;
SELECT count(*) AS jobs FROM workflow.jobs WHERE workflow = 'q_writer';

-- a key query that fails fails create_job, with a context line naming the workflow
SELECT workflow.create_workflow($${"name": "q_failing",
  "concurrency_key": "select (1 / ($1 -> 'job' -> 'params' ->> 'n')::int)::text",
  "chain": [{"name": "a", "sql": "select 1"}]}$$);
SELECT workflow.create_job('q_failing', '{"n": 4}') AS jf \gset
SELECT concurrency_key FROM workflow.jobs WHERE id = :jf;
-- (the context lines of the query and of its workflow; the rest of the
-- stack is the implementation's)
CREATE FUNCTION pg_temp.err_context(stmt text)
RETURNS TABLE (line text) LANGUAGE plpgsql AS $$
DECLARE
    s   text;
    m   text;
    c   text;
BEGIN
    EXECUTE stmt;
    RETURN QUERY SELECT 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, c = PG_EXCEPTION_CONTEXT;
    RETURN QUERY
        SELECT s || ': ' || m
        UNION ALL
        SELECT 'CONTEXT: ' || l
          FROM regexp_split_to_table(c, E'\n') WITH ORDINALITY AS t(l, n)
         WHERE l ~ 'concurrency_key|1 / '
        ORDER BY 1;
END
$$;
SELECT pg_temp.err_context($$SELECT workflow.create_job('q_failing', '{"n": 0}')$$);
SELECT count(*) AS jobs FROM workflow.jobs WHERE workflow = 'q_failing';
-- a key is at most 1000 characters
SELECT workflow.create_workflow($${"name": "q_long",
  "concurrency_key": "select repeat('k', ($1 -> 'job' -> 'params' ->> 'n')::int)",
  "chain": [{"name": "a", "sql": "select 1"}]}$$);
SELECT workflow.create_job('q_long', '{"n": 1000}') AS jl \gset
SELECT length(concurrency_key) FROM workflow.jobs WHERE id = :jl;
SELECT pg_temp.err_context($$SELECT workflow.create_job('q_long', '{"n": 1001}')$$);

-------------------------------------------------------------------------------
-- Administrators only
-------------------------------------------------------------------------------

CREATE ROLE q_user LOGIN IN ROLE workflow_user;
CREATE ROLE q_admin LOGIN IN ROLE workflow_admin;
SET ROLE q_user;
SELECT pg_temp.err(c) AS as_workflow_user
  FROM (VALUES
    ($$SELECT workflow.create_queue('q_mine')$$),
    ($$SELECT workflow.alter_queue('q_slow', concurrency => 100)$$),
    ($$SELECT workflow.drop_queue('q_plain')$$)
  ) v(c);
-- a user may put jobs in a queue, and see the queues
SELECT pg_temp.err($$SELECT workflow.create_job('q_plainwf', queue => 'q_slow')$$) AS user_job;
SELECT queue, concurrency FROM workflow.queue_status WHERE queue = 'q_slow';
SET ROLE q_admin;
SELECT workflow.create_queue('q_admins');
SELECT workflow.alter_queue('q_admins', concurrency => 4);
SELECT workflow.drop_queue('q_admins');
RESET ROLE;
SELECT concurrency FROM workflow.queues WHERE name = 'q_slow';
SELECT count(*) FROM workflow.queues WHERE name IN ('q_mine', 'q_admins');

-------------------------------------------------------------------------------
-- queue_status
-------------------------------------------------------------------------------

DELETE FROM workflow.jobs WHERE workflow IN ('q_wf', 'q_plainwf', 'q_failing', 'q_long');
SELECT workflow.create_job('q_plainwf', queue => 'q_slow') AS s1 \gset
SELECT workflow.create_job('q_plainwf', queue => 'q_slow') AS s2 \gset
SELECT workflow.create_job('q_plainwf', queue => 'q_slow') AS s3 \gset
SELECT workflow.create_job('q_plainwf', queue => 'q_slow', run_at => '2030-01-01 00:00:00+00') AS s4 \gset
SELECT workflow.create_job('q_plainwf', queue => 'q_all') AS a1 \gset
SELECT id IS NOT NULL AS claimed FROM workflow.run_job(:s1, 'q-runner');
SELECT workflow.create_job('q_plainwf') AS d1 \gset
SELECT queue, concurrency, rate_limit, key_concurrency, queued, running, rate_interval, waiting,
       oldest_queued = '2030-01-01 00:00:00+00' AS future_oldest
  FROM workflow.queue_status ORDER BY queue;
SELECT oldest_queued <= now() AS due FROM workflow.queue_status WHERE queue = 'q_slow';

-------------------------------------------------------------------------------
-- drop_queue
-------------------------------------------------------------------------------

SELECT pg_temp.err(c) AS drop_queue
  FROM (VALUES
    ($$SELECT workflow.drop_queue(NULL)$$),
    ($$SELECT workflow.drop_queue('default')$$),
    ($$SELECT workflow.drop_queue('q_nope')$$),
    ($$SELECT workflow.drop_queue('q_slow')$$),
    ($$SELECT workflow.drop_queue('q_all')$$)
  ) v(c);
-- the detail names what uses it
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT workflow.drop_queue('q_slow');
SELECT workflow.drop_queue('q_all');
-- a live job holds the queue, whatever its state; an ended one does not
SELECT execution FROM workflow.finish_job(:s1, 'q-runner', 'succeeded');
DELETE FROM workflow.jobs WHERE id IN (:s2, :s3, :s4);
SELECT pg_temp.err($$SELECT workflow.drop_queue('q_slow')$$) AS named_by_q_wf;
SELECT workflow.drop_workflow('q_wf', force => true);
SELECT workflow.drop_queue('q_slow');
SELECT pg_temp.err($$SELECT workflow.create_job('q_plainwf', queue => 'q_slow')$$) AS dropped;
SELECT workflow.cancel_job(:a1);
SELECT workflow.drop_queue('q_all');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true)
  FROM (SELECT DISTINCT name FROM workflow.workflows WHERE name LIKE 'q\_%' AND part_of IS NULL) w
 ORDER BY name;
DELETE FROM workflow.jobs WHERE queue <> 'default' OR workflow LIKE 'q\_%';
SELECT workflow.drop_queue(name) FROM workflow.queues WHERE name <> 'default' ORDER BY name;
DELETE FROM workflow.queues WHERE name = 'default';
SELECT count(*) AS queues_left FROM workflow.queues;
DROP TABLE public.q_keys;
DROP ROLE q_user;
DROP ROLE q_admin;
