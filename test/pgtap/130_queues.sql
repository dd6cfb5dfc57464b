-- 130_queues.sql: the limits of queues as the claims enforce them
-- (README "Queues"): concurrency (running jobs of a queue, whoever claims
-- them: _runner_claim, poll_tasks and run_job together), the rate limit's
-- token bucket, key_concurrency per concurrency key; a limited queue never
-- holds back another queue; the claim order of a batch; children of a
-- parallel entry in their parent's queue with its key; queue_status;
-- alter_queue at the next claim; drop_queue once the jobs have ended.
--
-- No background runner runs in the pgTAP cluster (workflow.enabled = off,
-- workflow.runners = 0): this file plays the in-server runners
-- (_runner_claim, _runner_record), the external workers (poll_tasks,
-- complete_task) and run_job's runners.  One transaction; each section
-- starts from no job and no queue (pg_temp.reset).  A rate bucket refills
-- at the clock, so the rates here are per hour: it does not refill
-- measurably while the file runs.

BEGIN;
SELECT plan(47);

SET LOCAL search_path = public, pg_catalog;
SET CONSTRAINTS ALL IMMEDIATE;

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------

CREATE FUNCTION pg_temp.reset()
RETURNS void LANGUAGE sql AS $$
    DELETE FROM workflow.joins;
    DELETE FROM workflow.target_locks;
    DELETE FROM workflow.task_runs;
    DELETE FROM workflow.job_info;
    DELETE FROM workflow.jobs;
    DELETE FROM workflow.runners;
    DELETE FROM workflow.queues;
$$;

-- a claim of an in-server runner of up to p_limit jobs: the ids, in claim
-- order, as the runner orders them (src/runner.c, claim_batch)
CREATE FUNCTION pg_temp.claim(p_limit integer DEFAULT 10)
RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(c.id ORDER BY c.priority DESC, c.run_at, c.id), '{}')
      FROM workflow._runner_claim('r1', p_limit) AS c
$$;

-- what an in-server runner reports for the running job (its current lease)
CREATE FUNCTION pg_temp.rec(p_id bigint, p_outcome workflow.outcome)
RETURNS void LANGUAGE sql AS $$
    SELECT FROM workflow._runner_record(p_id, (SELECT lease FROM workflow.jobs WHERE id = p_id),
                                        p_outcome, NULL, NULL, now(), NULL, NULL)
$$;

-- the running jobs of a queue
CREATE FUNCTION pg_temp.running(p_queue text)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM workflow.jobs WHERE queue = p_queue AND execution = 'running'
$$;

-- p_n jobs of workflow p_wf in queue p_queue: their ids in creation order
CREATE FUNCTION pg_temp.jobs(p_wf text, p_n integer, p_queue text DEFAULT NULL, p_params jsonb DEFAULT '{}')
RETURNS bigint[] LANGUAGE sql AS $$
    SELECT array_agg(workflow.create_job(p_wf, p_params, queue => p_queue) ORDER BY i)
      FROM generate_series(1, p_n) i
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

-------------------------------------------------------------------------------
-- Workflows (setup, output not shown)
-------------------------------------------------------------------------------

\o /dev/null
SELECT workflow.create_workflow('{"name": "qt_one", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "qt_ext", "chain": [{"name": "x", "task_type": "qt.ext"}]}');
SELECT workflow.create_workflow($${"name": "qt_key",
    "concurrency_key": "select $1 -> 'job' -> 'params' ->> 't'",
    "chain": [{"name": "a", "sql": "select 1"}]}$$);
\o

-------------------------------------------------------------------------------
-- concurrency: at most that many running jobs of the queue
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qc', concurrency => 2);
SELECT pg_temp.jobs('qt_one', 5, 'qc') AS qc \gset
SELECT pg_temp.claim() AS c1 \gset
SELECT is(:'c1'::bigint[], (:'qc'::bigint[])[1:2], 'concurrency 2, 5 queued: a claim takes the first 2');
SELECT is(cardinality(pg_temp.claim()), 0, 'concurrency 2: the next claim takes none');
SELECT pg_temp.rec((:'c1'::bigint[])[1], 'succeeded');
SELECT is(pg_temp.claim(), ARRAY[(:'qc'::bigint[])[3]], 'concurrency 2: after one ends, a claim takes one');
SELECT is(cardinality(pg_temp.claim()), 0, 'concurrency 2: full again');

SELECT is((SELECT format('%s %s %s %s', concurrency, queued, running, waiting)
             FROM workflow.queue_status WHERE queue = 'qc'),
          '2 2 2 0', 'queue_status: concurrency, queued, running and waiting jobs of the queue');
SELECT is((SELECT format('%s %s', queued, running) FROM workflow.queue_status WHERE queue = 'default'),
          '0 0', 'queue_status: "default" is listed without a row');

-- alter_queue takes effect at the next claim
SELECT workflow.alter_queue('qc', concurrency => 3);
SELECT is(pg_temp.claim(), ARRAY[(:'qc'::bigint[])[4]], 'alter_queue: concurrency 3 at the next claim');
SELECT workflow.alter_queue('qc', concurrency => 1);
SELECT pg_temp.rec((:'qc'::bigint[])[2], 'succeeded');
SELECT is(cardinality(pg_temp.claim()), 0, 'alter_queue: concurrency 1, 2 still running: none');
SELECT workflow.alter_queue('qc', concurrency => 0);
SELECT is(pg_temp.claim(), ARRAY[(:'qc'::bigint[])[5]], 'alter_queue: concurrency removed: the rest');
SELECT is(pg_temp.running('qc'), 3, 'three running');

-- drop_queue: refused while a job of it is live, done once they ended
SELECT is(pg_temp.state_of($$SELECT workflow.drop_queue('qc')$$), '55006', 'drop_queue: refused while jobs run');
SELECT pg_temp.rec(id, 'succeeded') FROM workflow.jobs WHERE queue = 'qc' AND execution = 'running';
SELECT is((SELECT count(*)::integer FROM workflow.jobs WHERE queue = 'qc' AND execution = 'succeeded'), 5,
          'every job of qc succeeded');
SELECT ok(workflow.drop_queue('qc'), 'drop_queue: done once the jobs ended');
SELECT ok(NOT EXISTS (SELECT 1 FROM workflow.queue_status WHERE queue = 'qc'), 'queue_status: qc is gone');

-------------------------------------------------------------------------------
-- a limited queue never holds back another one, even when its jobs come
-- first in claim order and are many
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qs', concurrency => 1);
SELECT workflow.create_queue('qfree');
SELECT count(workflow.create_job('qt_one', '{}', priority => 10, queue => 'qs')) FROM generate_series(1, 200) \gset
SELECT pg_temp.jobs('qt_one', 2, 'qfree') AS free \gset
SELECT pg_temp.jobs('qt_one', 2) AS dflt \gset
SELECT is((SELECT count(*)::integer FROM workflow.next_jobs(0, 199) n JOIN workflow.jobs j ON j.id = n
            WHERE j.queue = 'qs'),
          200, 'the 200 jobs of qs come first in claim order');
SELECT pg_temp.claim(10) AS c \gset
SELECT is((SELECT count(*)::integer FROM workflow.jobs WHERE id = ANY (:'c') AND queue = 'qs'), 1,
          'a claim of 10 takes one job of qs (concurrency 1)');
SELECT is((SELECT array_agg(id ORDER BY id) FROM workflow.jobs WHERE id = ANY (:'c') AND queue <> 'qs'),
          (:'free'::bigint[]) || (:'dflt'::bigint[]),
          '... and every job of the other queues, the default one too');
SELECT is(cardinality(pg_temp.claim(10)), 0, 'the next claim takes none: qs is full, the others are empty');
SELECT is(pg_temp.claim(10), '{}'::bigint[], 'still none');

-------------------------------------------------------------------------------
-- rate_limit: a bucket of rate_limit tokens, one per claim
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qr', rate_limit => 3, rate_interval => '1 hour');
SELECT pg_temp.jobs('qt_one', 8, 'qr') AS qr \gset
SELECT is(pg_temp.claim(2), (:'qr'::bigint[])[1:2], 'rate 3 per hour: a claim of 2 takes 2');
SELECT is(pg_temp.claim(10), (:'qr'::bigint[])[3:3], 'rate 3 per hour: the next claim takes the last token');
SELECT pg_temp.rec(id, 'succeeded') FROM workflow.jobs WHERE queue = 'qr' AND execution = 'running';
SELECT is(cardinality(pg_temp.claim(10)), 0, 'rate 3 per hour: none left, though nothing runs');
SELECT ok((SELECT tokens < 1 FROM workflow.queues WHERE name = 'qr'), 'the bucket is empty');
SELECT workflow.alter_queue('qr', rate_limit => 4);
SELECT is(pg_temp.claim(10), (:'qr'::bigint[])[4:7], 'alter_queue to 4 per hour: a full bucket of 4 at the next claim');
SELECT is(cardinality(pg_temp.claim(10)), 0, 'then none');
SELECT workflow.alter_queue('qr', rate_limit => 0);
SELECT is(pg_temp.claim(10), (:'qr'::bigint[])[8:8], 'rate limit removed: the rest');

-------------------------------------------------------------------------------
-- key_concurrency: at most that many running per concurrency key
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qk', key_concurrency => 1);
SELECT workflow.create_job('qt_key', '{"t": "t0"}', queue => 'qk') AS k1 \gset
SELECT workflow.create_job('qt_key', '{"t": "t0"}', queue => 'qk') AS k2 \gset
SELECT workflow.create_job('qt_key', '{"t": "t1"}', queue => 'qk') AS k3 \gset
SELECT workflow.create_job('qt_key', '{"t": "t1"}', queue => 'qk') AS k4 \gset
SELECT workflow.create_job('qt_key', '{}', queue => 'qk') AS k5 \gset
SELECT workflow.create_job('qt_key', '{}', queue => 'qk') AS k6 \gset
SELECT is((SELECT string_agg(coalesce(concurrency_key, '-'), ',' ORDER BY id) FROM workflow.jobs WHERE queue = 'qk'),
          't0,t0,t1,t1,-,-', 'the keys stored at creation');
SELECT is(pg_temp.claim(10), ARRAY[:k1, :k3, :k5, :k6]::bigint[],
          'key_concurrency 1: one job per key, and every job without a key');
SELECT is(cardinality(pg_temp.claim(10)), 0, 'key_concurrency 1: none while t0 and t1 run');
SELECT pg_temp.rec(:k1, 'succeeded');
SELECT is(pg_temp.claim(10), ARRAY[:k2]::bigint[], 'key t0 ended: the next job of t0');
SELECT is(cardinality(pg_temp.claim(10)), 0, 'and none of t1');

-------------------------------------------------------------------------------
-- poll_tasks, _runner_claim and run_job share the queue's concurrency
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qp', concurrency => 2);
SELECT pg_temp.jobs('qt_ext', 3, 'qp') AS ext \gset
SELECT pg_temp.jobs('qt_one', 3, 'qp') AS sql \gset
SELECT is((SELECT array_agg(job_id) FROM workflow.poll_tasks('qt.ext', 'w1', 1)), (:'ext'::bigint[])[1:1],
          'poll_tasks: one task of qp');
SELECT is(pg_temp.claim(10), (:'sql'::bigint[])[1:1], 'the runner claim takes the one slot left');
SELECT is((SELECT count(*)::integer FROM workflow.poll_tasks('qt.ext', 'w1', 5)), 0,
          'poll_tasks: none, qp is full');
SELECT is((SELECT r.id FROM workflow.run_job((:'sql'::bigint[])[2], 'r2') r), NULL::bigint,
          'run_job: refused (NULL) while qp is full');
SELECT is((SELECT execution::text FROM workflow.jobs WHERE id = (:'sql'::bigint[])[2]), 'queued',
          '... and the job stays queued');
SELECT is(pg_temp.running('qp'), 2, 'two running in qp');
-- the external task ends: one slot, taken by poll_tasks
SELECT ok(workflow.complete_task(id, lease, '"done"'), 'complete_task of the first external task')
  FROM workflow.jobs WHERE id = (:'ext'::bigint[])[1];
SELECT is((SELECT array_agg(job_id) FROM workflow.poll_tasks('qt.ext', 'w1', 5)), (:'ext'::bigint[])[2:2],
          'poll_tasks: after one ended, one task');
SELECT pg_temp.rec((:'sql'::bigint[])[1], 'succeeded');
SELECT is((SELECT r.id FROM workflow.run_job((:'sql'::bigint[])[2], 'r2') r), (:'sql'::bigint[])[2],
          'run_job: claims once a slot is free');
SELECT is(cardinality(pg_temp.claim(10)), 0, 'and then the runner claim takes none');

-------------------------------------------------------------------------------
-- claim order: a claim takes the first jobs by (priority DESC, run_at, id),
-- across queues (the runner then starts them in that order: TAP 240)
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qo');
CREATE TEMP TABLE ord (id bigint);
INSERT INTO ord
SELECT workflow.create_job('qt_one', '{}', run_at => now() - v.ago, priority => v.p, queue => v.q)
  FROM (VALUES (0, interval '1 min', 'default'), (5, '1 min', 'qo'), (-1, '5 min', 'default'),
               (5, '3 min', 'default'), (10, '1 min', 'qo'), (0, '2 min', 'qo'),
               (5, '1 min', 'default'), (0, '1 min', 'qo')) v(p, ago, q);
SELECT pg_temp.claim(5) AS got \gset
SELECT is(:'got'::bigint[],
          (SELECT (array_agg(j.id ORDER BY j.priority DESC, j.run_at, j.id))[1:5]
             FROM workflow.jobs j JOIN ord USING (id)),
          'a claim of 5 takes the first 5 in claim order (priority DESC, run_at, id)');
SELECT isnt((SELECT array_agg(x ORDER BY x) FROM unnest(:'got'::bigint[]) x),
            (SELECT (array_agg(id ORDER BY id))[1:5] FROM ord), '... which are not the first 5 created here');

-------------------------------------------------------------------------------
-- children of a parallel entry: the parent's queue and concurrency key
-------------------------------------------------------------------------------

SELECT pg_temp.reset();
SELECT workflow.create_queue('qw');
SELECT workflow.create_queue('qx');
\o /dev/null
SELECT workflow.create_workflow($${"name": "qt_par", "queue": "qw",
    "concurrency_key": "select $1 -> 'job' -> 'params' ->> 't'",
    "chain": [{"name": "first", "sql": "select 1"},
              {"name": "fan", "parallel": {"a": [{"name": "a1", "sql": "select 1"}],
                                           "b": [{"name": "b1", "sql": "select 1"}]}}]}$$);
\o
SELECT workflow.create_job('qt_par', '{"t": "tenant-9"}') AS par \gset
SELECT workflow.create_job('qt_par', '{"t": "tenant-8"}', queue => 'qx') AS parx \gset
SELECT is(cardinality(pg_temp.claim(10)), 2, 'both parents claimed');
SELECT pg_temp.rec(:par, 'succeeded'), pg_temp.rec(:parx, 'succeeded');
-- (a runner may go on with the same claim: claim what is queued again)
SELECT pg_temp.claim(10) AS ignore \gset
SELECT is(pg_temp.running('qw') + pg_temp.running('qx'), 2, 'both parents run, at the parallel entry');
SELECT pg_temp.rec(:par, 'wait_step'), pg_temp.rec(:parx, 'wait_step');
SELECT is((SELECT string_agg(format('%s/%s/%s', branch, queue, concurrency_key), ' ' ORDER BY id)
             FROM workflow.jobs WHERE parent_id = :par),
          'a/qw/tenant-9 b/qw/tenant-9', 'the children are in the parent''s queue, with its key');
SELECT is((SELECT string_agg(format('%s/%s/%s', branch, queue, concurrency_key), ' ' ORDER BY id)
             FROM workflow.jobs WHERE parent_id = :parx),
          'a/qx/tenant-8 b/qx/tenant-8', '... the queue the parent''s create_job named');

SELECT * FROM finish();
ROLLBACK;
