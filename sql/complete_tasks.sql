--
-- workflow.complete_tasks(): an external worker reports a batch of tasks
-- in one call.  Its argument errors; the result in the order given; the
-- usual cases (the last task, a next external task, a next SQL task) next
-- to the ones the SQL rules decide (a job given twice, a job with a
-- target); the all-or-nothing failure on a stale lease; the heartbeat.
--
-- No runner or sweeper acts in this instance.  Workflows are named ct_*,
-- task types ct.*, workers ct-*; the file removes them at the end.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 6001, whatever ran before, so that the
-- error messages that name them are stable.  Leases are random: they are
-- never printed, and an error that names one shows only its SQLSTATE
-- (VERBOSITY sqlstate).
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 6001, false) AS first_job_id;

SELECT workflow.create_workflow($${"name": "ct_one",
  "chain": [{"name": "work", "task_type": "ct.one"}]}$$) IS NOT NULL AS created;
SELECT workflow.create_workflow($${"name": "ct_three",
  "chain": [{"name": "a", "task_type": "ct.one"},
            {"name": "b", "task_type": "ct.two"},
            {"name": "c", "sql": "select 1"}]}$$) IS NOT NULL AS created;

-- argument errors
SELECT * FROM workflow.complete_tasks(NULL, '{1}');
SELECT * FROM workflow.complete_tasks('{1}', NULL);
SELECT * FROM workflow.complete_tasks('{1,2}', '{1}');
SELECT * FROM workflow.complete_tasks('{1}', '{1}', '{}');
SELECT * FROM workflow.complete_tasks('{{1}}', '{{1}}');
SELECT * FROM workflow.complete_tasks(array_fill(1::bigint, ARRAY[1001]), array_fill(1::bigint, ARRAY[1001]));
SET workflow.max_payload_size = 1;
SELECT * FROM workflow.complete_tasks('{1}', '{1}', ARRAY[jsonb_build_object('x', repeat('x', 2000))]);
RESET workflow.max_payload_size;
-- an empty batch does nothing
SELECT count(*) AS rows FROM workflow.complete_tasks('{}', '{}');

-- four jobs of ct_one and one of ct_three, one of ct_one with a target
SELECT count(workflow.create_job('ct_one', jsonb_build_object('l', i))) AS created
  FROM generate_series(1, 4) i;
SELECT workflow.create_job('ct_three', '{"l": 5}') AS three \gset
SELECT workflow.create_job('ct_one', '{"l": 6}', target => 'ct-target') AS targeted \gset
CREATE TEMP TABLE got AS
SELECT job_id, lease, input -> 'job' -> 'params' ->> 'l' AS l
  FROM workflow.poll_tasks('ct.one', 'ct-w1', 10);
SELECT l FROM got ORDER BY l;
SELECT count(*) AS target_held FROM workflow.target_locks WHERE target = 'ct-target';

-- a stale lease anywhere fails the whole call, and nothing is recorded
SELECT * FROM workflow.complete_tasks(
    (SELECT array_agg(job_id ORDER BY l) FROM got),
    (SELECT array_agg(CASE WHEN l = '3' THEN 1 ELSE lease END ORDER BY l) FROM got));
SELECT count(*) AS runs FROM workflow.task_runs r JOIN got ON r.job_id = got.job_id;

-- (an old heartbeat, to see the batch's)
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'ct-w1';
-- the whole batch, in reverse order, job 1 given twice (the second time a
-- repeat of the same output: false), with outputs
SELECT c.job_id = got.job_id AS same_job, got.l, c.recorded
  FROM workflow.complete_tasks(
           (SELECT array_agg(job_id ORDER BY l DESC) FROM got) || (SELECT job_id FROM got WHERE l = '1'),
           (SELECT array_agg(lease ORDER BY l DESC) FROM got) || (SELECT lease FROM got WHERE l = '1'),
           (SELECT array_agg(jsonb_build_object('done', l) ORDER BY l DESC) FROM got)
               || jsonb_build_object('done', '1'))
       WITH ORDINALITY AS c(job_id, recorded, n)
  JOIN got ON got.job_id = c.job_id
 ORDER BY c.n;

-- the jobs: ct_one ended with their outputs, the target released, the
-- three-task job queued at its second task (another type)
SELECT l, j.execution, j.step, j.task_type, j.result, j.lease IS NULL AS no_lease,
       j.runner_id, j.claimed_at IS NULL AS unclaimed
  FROM got JOIN workflow.jobs j ON j.id = got.job_id
 ORDER BY l;
SELECT count(*) AS target_held FROM workflow.target_locks WHERE target = 'ct-target';
SELECT l, r.phase, r.step, r.task, r.attempt, r.status, r.runner_id, r.lease = got.lease AS same_lease,
       r.output
  FROM got JOIN workflow.task_runs r ON r.job_id = got.job_id
 ORDER BY l;
-- the worker's heartbeat, and no task held
SELECT kind, last_heartbeat > now() - interval '1 minute' AS seen_now, idle
  FROM workflow.runner_status WHERE id = 'ct-w1';

-- the same batch again: repeats of the same outputs
SELECT count(*) FILTER (WHERE recorded) AS recorded, count(*) FILTER (WHERE NOT recorded) AS repeats
  FROM workflow.complete_tasks(
           (SELECT array_agg(job_id ORDER BY l) FROM got),
           (SELECT array_agg(lease ORDER BY l) FROM got),
           (SELECT array_agg(jsonb_build_object('done', l) ORDER BY l) FROM got));
-- with another output: refused
\set VERBOSITY sqlstate
SELECT * FROM workflow.complete_tasks(
    (SELECT array_agg(job_id ORDER BY l) FROM got),
    (SELECT array_agg(lease ORDER BY l) FROM got));
\set VERBOSITY default

-- the three-task job: its second task, then queued for the runners
CREATE TEMP TABLE got2 AS
SELECT job_id, lease, input -> 'results' AS results FROM workflow.poll_tasks('ct.two', 'ct-w2', 10);
SELECT job_id = :three AS the_job, results FROM got2;
SELECT recorded FROM workflow.complete_tasks((SELECT array_agg(job_id) FROM got2),
                                             (SELECT array_agg(lease) FROM got2));
SELECT execution, step, task_type IS NULL AS for_runners, runner_id IS NULL AS unclaimed
  FROM workflow.jobs WHERE id = :three;

-- the privilege: workflow_worker may call it, PUBLIC may not
SELECT has_function_privilege('workflow_worker', 'workflow.complete_tasks(bigint[], bigint[], jsonb[])', 'EXECUTE') AS worker,
       has_function_privilege('public', 'workflow.complete_tasks(bigint[], bigint[], jsonb[])', 'EXECUTE') AS public;

-- clean up
SELECT workflow.drop_workflow(name, force => true)
  FROM (SELECT DISTINCT name FROM workflow.workflows WHERE name LIKE 'ct\_%') w
 ORDER BY name;
DELETE FROM workflow.runners WHERE id LIKE 'ct-%';
SELECT count(*) AS jobs_left FROM workflow.jobs WHERE workflow LIKE 'ct\_%';
