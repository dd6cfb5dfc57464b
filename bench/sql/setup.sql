-- bench/sql/setup.sql: the benchmark's objects in database "bench".
-- Run once on a fresh cluster by bench/run.

CREATE EXTENSION workflow;

-- Case 1, physical floor: a plain append-only table ...
CREATE TABLE bench_insert (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    payload     jsonb NOT NULL DEFAULT '{}'
);

-- ... and a bare queue claimed with SKIP LOCKED and marked done.  As in
-- workflow.jobs, only undone rows are in the claim index (a partial
-- index), so marking a row done is a non-HOT update.
CREATE TABLE bench_queue (
    id          bigserial PRIMARY KEY,
    done        boolean NOT NULL DEFAULT false,
    done_at     timestamptz,
    payload     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX bench_queue_todo ON bench_queue (id) WHERE NOT done;

-- Case 3, latency: the creating transaction of every job, so that its
-- commit time is pg_xact_commit_timestamp(xid) (track_commit_timestamp).
-- The job row's own xmin is no good: the runner updates the row.  And when
-- the client had the commit's acknowledgement: the server's clock at its
-- next statement (bench/sql/latency_create.sql).
CREATE TABLE bench_created (
    job_id      bigint PRIMARY KEY,
    xid         xid8 NOT NULL,
    acked       timestamptz
);

-- The workflows of the issue: a 1-task and a 3-task no-op SQL workflow,
-- and a 1-task external workflow.
SELECT workflow.create_workflow('{"name": "noop", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "noop3", "chain": [{"name": "a", "sql": "select 1"},
                                                             {"name": "b", "sql": "select 1"},
                                                             {"name": "c", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "ext", "chain": [{"name": "x", "task_type": "bench"}]}');
-- the fan-out case: one job whose foreach entry starts one no-op SQL child
-- per item, params n items, at most params concurrency at a time (null: no
-- limit)
SELECT workflow.create_workflow('{"name": "fanout", "chain": [{"name": "each",
    "foreach": "select pg_catalog.jsonb_agg(g) from pg_catalog.generate_series(1, ($1->''job''->''params''->>''n'')::int) g",
    "do": [{"name": "x", "sql": "select 1"}]}]}');
SELECT workflow.create_workflow('{"name": "fanout10", "chain": [{"name": "each10",
    "foreach": "select pg_catalog.jsonb_agg(g) from pg_catalog.generate_series(1, ($1->''job''->''params''->>''n'')::int) g",
    "do": [{"name": "y", "sql": "select 1"}], "concurrency": 10}]}');

-- the queues case: a queue that runs at most 2 jobs at once, and a no-op
-- workflow in it
SELECT workflow.create_queue('bench_limited', concurrency => 2);
SELECT workflow.create_workflow('{"name": "noop_limited", "queue": "bench_limited",
                                  "chain": [{"name": "a", "sql": "select 1"}]}');
