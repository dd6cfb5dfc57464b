--
-- The external task protocol (Conductor's worker calls): poll_tasks,
-- complete_task, fail_task, extend_task, requeue_task, pause_task_type,
-- resume_task_type, domains (create_job's domain), lease expiry by the
-- sweeper, and the worker in runner_status.
--
-- No runner or sweeper acts in this instance (workflow.runners = 0,
-- workflow.enabled = off): the file plays the workers and calls
-- workflow._sweep() itself.  Workflows are named et_*, task types et.*,
-- workers et-*; the file removes them at the end.  Timestamps and leases are
-- compared, never printed: leases are random, and an error that names one
-- shows only its SQLSTATE (VERBOSITY sqlstate).
--
\set SHOW_CONTEXT never

-- job ids of this file start at 4001, whatever ran before, so that the
-- error messages that name them are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 4001, false) AS first_job_id;

-- two external tasks, then an SQL task that reads both outputs
SELECT workflow.create_workflow($${"name": "et_two",
  "chain": [{"name": "charge", "task_type": "et.pay", "timeout": "30 s"},
            {"name": "ship", "task_type": "et.ship"},
            {"name": "record", "sql": "select $1 -> 'results'"}]}$$);
-- one external task, for domains, batches, pausing
SELECT workflow.create_workflow($${"name": "et_one",
  "chain": [{"name": "work", "task_type": "et.one"}]}$$);
-- retried twice with a 10 s backoff, then an onerror chain
SELECT workflow.create_workflow($${"name": "et_retry",
  "chain": [{"name": "call", "task_type": "et.retry", "attempts": 2, "delay": "10 s"}],
  "onerror": [{"name": "cleanup", "sql": "select 'cleaned'"}]}$$);
-- three attempts, no delay, no onerror
SELECT workflow.create_workflow($${"name": "et_fail",
  "chain": [{"name": "call", "task_type": "et.fail", "attempts": 3}]}$$);

-- What workers got: every task poll_tasks handed out through pg_temp.poll,
-- with its lease, so that the lease can be passed on without printing it.
CREATE TEMP TABLE polled (n serial, t workflow.task);
CREATE FUNCTION pg_temp.poll(p_type text, p_worker text, p_count int DEFAULT 1, p_domain text DEFAULT NULL)
RETURNS SETOF workflow.task
LANGUAGE plpgsql AS $$
DECLARE
    t workflow.task;
BEGIN
    FOR t IN SELECT * FROM workflow.poll_tasks(p_type, p_worker, p_count, '0', p_domain) LOOP
        INSERT INTO polled (t) VALUES (t);
        RETURN NEXT t;
    END LOOP;
END $$;
-- the lease of the latest task handed out for a job
CREATE FUNCTION pg_temp.lease(p_job bigint) RETURNS bigint
LANGUAGE sql AS $$
    SELECT (t).lease FROM polled WHERE (t).job_id = p_job ORDER BY n DESC LIMIT 1
$$;
-- the job labels (params ->> 'l') of the tasks of a poll, in the order given
CREATE FUNCTION pg_temp.labels(p_type text, p_worker text, p_count int DEFAULT 1, p_domain text DEFAULT NULL)
RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(p.input -> 'job' -> 'params' ->> 'l', ' ' ORDER BY o), '(none)')
      FROM pg_temp.poll(p_type, p_worker, p_count, p_domain) WITH ORDINALITY AS p(job_id, task, task_type, domain, input, attempt, lease, lease_expires_at, o)
$$;

-------------------------------------------------------------------------------
-- poll_tasks: bad arguments
-------------------------------------------------------------------------------

SELECT workflow.create_job('et_one', '{"l": "Q"}') AS q \gset

SELECT * FROM workflow.poll_tasks(NULL, 'et-w1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('', 'et-w1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et one', 'et-w1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks(repeat('t', 129), 'et-w1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', repeat('w', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '5 min 1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '0', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '0', 'eu west');
\echo :LAST_ERROR_SQLSTATE
-- create_job refuses a bad domain too
SELECT workflow.create_job('et_one', '{}', domain => 'eu/west');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('et_one', '{}', domain => '');
\echo :LAST_ERROR_SQLSTATE

-- an external worker cannot use the id of an in-server runner, nor
-- register as one (even a superuser: only the in-server workers can)
SELECT workflow.register_runner('runner-1', 'runner');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner('runner-1');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner('et-bg', 'runner');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'runner-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'sweeper');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.runners WHERE id IN ('runner-1', 'et-bg');

-- none of these claimed anything or registered a worker
SELECT execution, runner_id, lease FROM workflow.jobs WHERE id = :q;
SELECT count(*) FROM workflow.runners WHERE id LIKE 'et-%';
-- the limits themselves are accepted (nothing of type et.none is queued)
SELECT count(*) FROM workflow.poll_tasks('et.none', 'et-w0', 1000, '0');
SELECT count(*) FROM workflow.poll_tasks(repeat('t', 128), repeat('w', 200), 1);
SELECT count(*) FROM workflow.poll_tasks('et.none', 'et-w0', 1, '0', repeat('d', 128));
DELETE FROM workflow.runners WHERE id IN ('et-w0', repeat('w', 200));
SELECT workflow.cancel_job(:q);

-------------------------------------------------------------------------------
-- poll_tasks: what a task is; complete_task moves the job on
-------------------------------------------------------------------------------

SELECT workflow.create_job('et_two', '{"l": "A", "amount": 42}', target => 'acct-9') AS a \gset
-- nothing for another type, or for the second task's type yet
SELECT count(*) FROM workflow.poll_tasks('et.ship', 'et-w1');
-- the job id, the task name and type, no domain, the job context as input,
-- attempt 1, a lease that ends after the task's timeout (30 s)
SELECT job_id = :a AS is_a, task, task_type, domain, input, attempt,
       lease IS NOT NULL AS leased,
       lease_expires_at BETWEEN now() + interval '29 s' AND clock_timestamp() + interval '30 s' AS lease_30s
  FROM pg_temp.poll('et.pay', 'et-w1');
-- the job is running, claimed by the worker under that lease
SELECT execution, runner_id = 'et-w1' AS by_w1, lease = pg_temp.lease(:a) AS same_lease,
       task_type, started_at IS NOT NULL AS started
  FROM workflow.jobs WHERE id = :a;
-- the worker is registered as an external runner, busy with the job
SELECT id, kind, alive, idle, current_job = :a AS current_is_a, running_jobs
  FROM workflow.runner_status WHERE id LIKE 'et-%' ORDER BY id;
-- nothing else to poll
SELECT count(*) FROM workflow.poll_tasks('et.pay', 'et-w1');

-- complete it: the job moves to the next external task, queued for et.ship
SELECT workflow.complete_task(:a, pg_temp.lease(:a), '{"charged": 42}');
SELECT execution, phase, step, task_type, task_attempt, runner_id, lease
  FROM workflow.jobs WHERE id = :a;
SELECT id, kind, current_job, running_jobs
  FROM workflow.runner_status WHERE id LIKE 'et-%' ORDER BY id;
-- the same report again is idempotent (false, nothing changes) ...
SELECT workflow.complete_task(:a, pg_temp.lease(:a), '{"charged": 42}');
-- ... another output under the same lease is refused
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:a, pg_temp.lease(:a), '{"charged": 43}');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:a, pg_temp.lease(:a));
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.task_runs WHERE job_id = :a;
SELECT pg_temp.lease(:a) AS a_lease_1 \gset
-- the runners' queue does not list it: its next task is external
SELECT count(*) FROM workflow.next_jobs(0, 99) n WHERE n = :a;
SELECT count(*) FROM workflow.next_jobs(0, 99, 'et.ship') n WHERE n = :a;
-- the next poll of et.ship gets it, with the first task's output in the input
SELECT job_id = :a AS is_a, task, task_type, input -> 'task' AS task_ctx,
       input -> 'results' AS results, input -> 'job' -> 'params' AS params, attempt
  FROM pg_temp.poll('et.ship', 'et-w2');
SELECT pg_temp.lease(:a) <> :a_lease_1 AS new_lease;
-- the first lease is still an idempotent repeat, and still refused for
-- anything else
SELECT workflow.complete_task(:a, :a_lease_1, '{"charged": 42}');
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:a, :a_lease_1, '{"charged": 0}');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.fail_task(:a, :a_lease_1, 'late');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.extend_task(:a, :a_lease_1);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.requeue_task(:a, :a_lease_1, '0');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- the target stays held between the tasks
SELECT job_id = :a AS held_by_a FROM workflow.target_locks WHERE target = 'acct-9';
-- complete the second task: the job is queued for the runners (SQL task)
SELECT workflow.complete_task(:a, pg_temp.lease(:a), '{"parcel": "P-1"}');
SELECT execution, phase, step, task_type, runner_id, lease FROM workflow.jobs WHERE id = :a;
SELECT count(*) FROM workflow.next_jobs(0, 99) n WHERE n = :a;
SELECT count(*) FROM workflow.poll_tasks('et.ship', 'et-w2');
-- the SQL task would receive both outputs
SELECT workflow.job_context(j) -> 'task' AS task, workflow.job_context(j) -> 'results' AS results
  FROM workflow.jobs j WHERE id = :a;
SELECT task, attempt, status, output, runner_id FROM workflow.task_runs WHERE job_id = :a ORDER BY id;

-------------------------------------------------------------------------------
-- complete/fail/extend/requeue: unknown job, NULL lease, stale lease
-------------------------------------------------------------------------------

SELECT workflow.create_job('et_one', '{"l": "B"}') AS b \gset
SELECT task FROM pg_temp.poll('et.one', 'et-w1');

SELECT workflow.complete_task(999999, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.fail_task(999999, 1, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(999999, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.requeue_task(999999, 1, '0');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.complete_task(NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.complete_task(:b, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.fail_task(:b, NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(:b, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.requeue_task(:b, NULL, '0');
\echo :LAST_ERROR_SQLSTATE
-- a lease that is not the job's
SELECT workflow.complete_task(:b, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.fail_task(:b, 1, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(:b, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.requeue_task(:b, 1, '0');
\echo :LAST_ERROR_SQLSTATE
-- bad values
SELECT workflow.fail_task(:b, pg_temp.lease(:b), NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.fail_task(:b, pg_temp.lease(:b), 'x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(:b, pg_temp.lease(:b), '0');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(:b, pg_temp.lease(:b), '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(:b, pg_temp.lease(:b), '1 day 1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), NULL);
\echo :LAST_ERROR_SQLSTATE
-- user-given intervals are bounded (0 to 100 years), never overflow
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), '100 years 1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), '296516 years 8 mons');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.extend_task(:b, pg_temp.lease(:b), '296516 years 8 mons');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '178000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM workflow.poll_tasks('et.one', 'et-w1', 1, '-178000000 years');
\echo :LAST_ERROR_SQLSTATE
-- none of it changed the job
SELECT execution, runner_id, lease = pg_temp.lease(:b) AS same_lease, task_attempt
  FROM workflow.jobs WHERE id = :b;
SELECT count(*) FROM workflow.task_runs WHERE job_id = :b;

-------------------------------------------------------------------------------
-- extend_task
-------------------------------------------------------------------------------

SELECT lease_expires_at AS b_exp0, clock_timestamp() AS t0 FROM workflow.jobs WHERE id = :b \gset
-- by an interval: the lease now ends that long from now
SELECT workflow.extend_task(:b, pg_temp.lease(:b), '1 hour') AS b_exp1 \gset
SELECT :'b_exp1'::timestamptz > :'b_exp0'::timestamptz AS later,
       :'b_exp1'::timestamptz BETWEEN :'t0'::timestamptz + interval '1 hour' AND clock_timestamp() + interval '1 hour' AS in_1h,
       lease_expires_at = :'b_exp1'::timestamptz AS stored,
       lease = pg_temp.lease(:b) AS same_lease
  FROM workflow.jobs WHERE id = :b;
-- at most 1 day
SELECT workflow.extend_task(:b, pg_temp.lease(:b), '1 day') > now() + interval '23 hours' AS one_day;
-- by default, workflow.task_lease (60 s in this instance) from now
SHOW workflow.task_lease;
SELECT workflow.extend_task(:b, pg_temp.lease(:b))
       BETWEEN now() + interval '60 s' AND clock_timestamp() + interval '60 s' AS task_lease;
-- a task with a timeout: the timeout
SELECT workflow.create_job('et_two', '{"l": "T"}') AS t \gset
SELECT task FROM pg_temp.poll('et.pay', 'et-w1');
SELECT workflow.extend_task(:t, pg_temp.lease(:t))
       BETWEEN now() + interval '30 s' AND clock_timestamp() + interval '30 s' AS timeout;
-- still running, same lease, no attempt recorded
SELECT execution, lease = pg_temp.lease(:b) AS same_lease, task_attempt FROM workflow.jobs WHERE id = :b;
SELECT count(*) FROM workflow.task_runs WHERE job_id = :b;
SELECT workflow.cancel_job(:t);
-- a canceled job's lease is stale
\set VERBOSITY sqlstate
SELECT workflow.extend_task(:t, pg_temp.lease(:t));
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:t, pg_temp.lease(:t));
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- requeue_task: handed back without counting an attempt
-------------------------------------------------------------------------------

SELECT clock_timestamp() AS t0 \gset
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), '1 hour');
SELECT execution, task_attempt, runner_id, lease, lease_expires_at,
       run_at BETWEEN :'t0'::timestamptz + interval '1 hour' AND clock_timestamp() + interval '1 hour' AS in_1h
  FROM workflow.jobs WHERE id = :b;
SELECT attempt, status, output, error FROM workflow.task_runs WHERE job_id = :b ORDER BY id;
-- a repeat is idempotent; anything else under that lease is refused
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), '1 hour');
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:b, pg_temp.lease(:b));
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- not visible before the delay
SELECT count(*) FROM workflow.poll_tasks('et.one', 'et-w1');
-- ... and visible after it, at the same attempt
UPDATE workflow.jobs SET run_at = now() - interval '1 s' WHERE id = :b;
SELECT input -> 'job' -> 'params' ->> 'l' AS l, attempt, input -> 'task' AS task_ctx
  FROM pg_temp.poll('et.one', 'et-w2');
-- a requeue with no delay is visible at once
SELECT workflow.requeue_task(:b, pg_temp.lease(:b), '0');
SELECT input -> 'job' -> 'params' ->> 'l' AS l, attempt FROM pg_temp.poll('et.one', 'et-w1');
SELECT workflow.complete_task(:b, pg_temp.lease(:b), '"done"');
SELECT execution, result FROM workflow.jobs WHERE id = :b;
SELECT attempt, status, runner_id, output FROM workflow.task_runs WHERE job_id = :b ORDER BY id;

-------------------------------------------------------------------------------
-- fail_task: retries with backoff, onerror, retryable = false
-------------------------------------------------------------------------------

SELECT workflow.create_job('et_retry', '{"l": "R"}') AS r \gset
SELECT attempt FROM pg_temp.poll('et.retry', 'et-w1');
SELECT clock_timestamp() AS t0 \gset
SELECT workflow.fail_task(:r, pg_temp.lease(:r), 'card declined');
-- queued again at the same task, attempt 2, after the 10 s backoff
SELECT execution, phase, step, task_type, task_attempt, runner_id, lease,
       run_at BETWEEN :'t0'::timestamptz + interval '10 s' AND clock_timestamp() + interval '10 s' AS after_10s,
       error
  FROM workflow.jobs WHERE id = :r;
-- a repeat is idempotent; a late complete is refused
SELECT workflow.fail_task(:r, pg_temp.lease(:r), 'card declined');
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:r, pg_temp.lease(:r));
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- not before the backoff
SELECT count(*) FROM workflow.poll_tasks('et.retry', 'et-w1');
UPDATE workflow.jobs SET run_at = now() - interval '1 s' WHERE id = :r;
SELECT attempt, input -> 'task' AS task_ctx FROM pg_temp.poll('et.retry', 'et-w1');
-- the last attempt fails: the onerror chain is queued for the runners
SELECT workflow.fail_task(:r, pg_temp.lease(:r), 'card declined again');
SELECT execution, phase, step, task_type, task_attempt, error FROM workflow.jobs WHERE id = :r;
SELECT count(*) FROM workflow.next_jobs(0, 99) n WHERE n = :r;
SELECT task, attempt, status, error FROM workflow.task_runs WHERE job_id = :r ORDER BY id;

-- retryable = false: no retry although attempts remain, no onerror: failed
SELECT workflow.create_job('et_fail', '{"l": "F"}') AS f \gset
SELECT attempt FROM pg_temp.poll('et.fail', 'et-w2');
SELECT workflow.fail_task(:f, pg_temp.lease(:f), 'fatal', retryable => false);
SELECT execution, task_type, lease, error, finished_at IS NOT NULL AS finished
  FROM workflow.jobs WHERE id = :f;
SELECT workflow.fail_task(:f, pg_temp.lease(:f), 'fatal', retryable => false);
SELECT count(*) FROM workflow.poll_tasks('et.fail', 'et-w2');

-- retryable with attempts left and no delay: handed out again at once
SELECT workflow.create_job('et_fail', '{"l": "G"}') AS g \gset
SELECT attempt FROM pg_temp.poll('et.fail', 'et-w2');
SELECT workflow.fail_task(:g, pg_temp.lease(:g), 'try again');
SELECT attempt, input -> 'task' AS task_ctx FROM pg_temp.poll('et.fail', 'et-w1');
SELECT workflow.fail_task(:g, pg_temp.lease(:g), 'try again');
SELECT attempt FROM pg_temp.poll('et.fail', 'et-w2');
-- the third and last attempt fails: failed
SELECT workflow.fail_task(:g, pg_temp.lease(:g), 'gave up');
SELECT execution, error FROM workflow.jobs WHERE id = :g;
SELECT attempt, status, runner_id, error ->> 'message' AS message
  FROM workflow.task_runs WHERE job_id = :g ORDER BY id;

-------------------------------------------------------------------------------
-- lease expiry: the sweeper takes the task back, the late worker is refused
-------------------------------------------------------------------------------

SELECT workflow.create_job('et_fail', '{"l": "X"}') AS x \gset
SELECT attempt FROM pg_temp.poll('et.fail', 'et-w1');
SELECT pg_temp.lease(:x) AS x_lease_1 \gset
-- the lease is not expired yet: nothing to sweep
SELECT workflow._sweep('cancel', '0', 100);
UPDATE workflow.jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :x;
SELECT id = :x AS is_x FROM workflow.stale_jobs();
-- a failed attempt (attempts 3: queued again at attempt 2)
SELECT workflow._sweep('cancel', '0', 100);
SELECT execution, task_attempt, runner_id, lease, error FROM workflow.jobs WHERE id = :x;
SELECT attempt, status, runner_id, error FROM workflow.task_runs WHERE job_id = :x ORDER BY id;
-- the late worker's reports are refused, a failure report too (the failed
-- attempt recorded under its lease is the sweeper's, not a report of its)
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:x, :x_lease_1, '"late"');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.fail_task(:x, :x_lease_1, 'late');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.requeue_task(:x, :x_lease_1, '0');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- another worker gets it, attempt 2
SELECT attempt, input -> 'task' AS task_ctx FROM pg_temp.poll('et.fail', 'et-w2');
-- the late worker is still refused, the new one accepted
\set VERBOSITY sqlstate
SELECT workflow.complete_task(:x, :x_lease_1, '"late"');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.fail_task(:x, :x_lease_1, 'late');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT workflow.extend_task(:x, :x_lease_1);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.complete_task(:x, pg_temp.lease(:x), '"on time"');
SELECT execution, result FROM workflow.jobs WHERE id = :x;

-------------------------------------------------------------------------------
-- domains
-------------------------------------------------------------------------------

SELECT workflow.create_job('et_one', '{"l": "N1"}', run_at => now() - interval '5 s') AS n1 \gset
SELECT workflow.create_job('et_one', '{"l": "N2"}', run_at => now() - interval '4 s') AS n2 \gset
SELECT workflow.create_job('et_one', '{"l": "E1"}', run_at => now() - interval '3 s', domain => 'eu') AS e1 \gset
SELECT workflow.create_job('et_one', '{"l": "U1"}', run_at => now() - interval '2 s', domain => 'us') AS u1 \gset
SELECT workflow.create_job('et_one', '{"l": "E2"}', run_at => now() - interval '1 s', domain => 'eu') AS e2 \gset

-- (looks in a transaction that is rolled back, so nothing is consumed)
-- a worker without a domain gets only the tasks without one
BEGIN;
SELECT pg_temp.labels('et.one', 'et-w1', 10) AS no_domain;
ROLLBACK;
-- a worker of domain eu gets eu's tasks first, then those without a domain,
-- never another domain's
BEGIN;
SELECT pg_temp.labels('et.one', 'et-eu', 10, 'eu') AS eu;
ROLLBACK;
BEGIN;
SELECT pg_temp.labels('et.one', 'et-eu', 3, 'eu') AS eu_3;
ROLLBACK;
-- a domain nobody created jobs for: only the tasks without a domain
BEGIN;
SELECT pg_temp.labels('et.one', 'et-asia', 10, 'asia') AS asia;
ROLLBACK;

-- one at a time
SELECT job_id = :e1 AS is_e1, domain, input -> 'job' -> 'params' ->> 'l' AS l
  FROM pg_temp.poll('et.one', 'et-eu', 1, 'eu');
SELECT pg_temp.labels('et.one', 'et-eu', 1, 'eu') AS eu;
SELECT pg_temp.labels('et.one', 'et-eu', 1, 'eu') AS eu;
SELECT pg_temp.labels('et.one', 'et-eu', 1, 'eu') AS eu;
-- eu has nothing left: us's task is not for it
SELECT pg_temp.labels('et.one', 'et-eu', 10, 'eu') AS eu;
SELECT pg_temp.labels('et.one', 'et-w1', 10) AS no_domain;
SELECT job_id = :u1 AS is_u1, domain FROM pg_temp.poll('et.one', 'et-us', 10, 'us');
-- the domain is reported and kept on the job
SELECT params ->> 'l' AS l, domain, execution, runner_id FROM workflow.jobs
 WHERE id IN (:n1, :n2, :e1, :u1, :e2) ORDER BY id;
SELECT count(*) FILTER (WHERE workflow.complete_task(id, pg_temp.lease(id))) AS completed
  FROM workflow.jobs WHERE id IN (:n1, :n2, :e1, :u1, :e2);

-------------------------------------------------------------------------------
-- batches
-------------------------------------------------------------------------------

SELECT count(*) FILTER (WHERE workflow.create_job('et_one', jsonb_build_object('l', 'K' || i),
                                                  run_at => now() - interval '1 min' + i * interval '1 s') IS NOT NULL) AS created
  FROM generate_series(1, 5) i;
SELECT pg_temp.labels('et.one', 'et-w1', 3) AS batch_3;
SELECT pg_temp.labels('et.one', 'et-w2', 3) AS batch_3;
SELECT pg_temp.labels('et.one', 'et-w1', 3) AS batch_3;
SELECT id, kind, alive, running_jobs
  FROM workflow.runner_status WHERE id LIKE 'et-%' ORDER BY id;
SELECT count(*) FILTER (WHERE workflow.complete_task(id, pg_temp.lease(id), to_jsonb(params ->> 'l'))) AS completed
  FROM workflow.jobs WHERE workflow = 'et_one' AND params ->> 'l' LIKE 'K%';
SELECT count(*) FROM workflow.jobs WHERE workflow = 'et_one' AND params ->> 'l' LIKE 'K%' AND execution = 'succeeded';

-------------------------------------------------------------------------------
-- pause_task_type / resume_task_type
-------------------------------------------------------------------------------

SELECT workflow.pause_task_type(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.pause_task_type('');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.pause_task_type('et one');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.resume_task_type(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.resume_task_type('et/one');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.task_types;

SELECT workflow.create_job('et_one', '{"l": "P"}') AS p \gset
SELECT workflow.pause_task_type('et.one');
SELECT workflow.pause_task_type('et.one');
SELECT task_type, paused, paused_at IS NOT NULL AS paused_at, paused_by = current_user::regrole AS paused_by_me
  FROM workflow.task_types;
-- paused: nothing is handed out, in any domain
SELECT count(*) FROM workflow.poll_tasks('et.one', 'et-w1', 10);
SELECT count(*) FROM workflow.poll_tasks('et.one', 'et-w1', 10, '0', 'eu');
SELECT execution FROM workflow.jobs WHERE id = :p;
-- other types are not paused
SELECT workflow.create_job('et_fail', '{"l": "P2"}') AS p2 \gset
SELECT input -> 'job' -> 'params' ->> 'l' AS l FROM pg_temp.poll('et.fail', 'et-w1');
SELECT workflow.complete_task(:p2, pg_temp.lease(:p2));
-- resumed: handed out again
SELECT workflow.resume_task_type('et.one');
SELECT workflow.resume_task_type('et.one');
SELECT workflow.resume_task_type('et.never.paused');
SELECT task_type, paused, paused_at, paused_by FROM workflow.task_types;
SELECT job_id = :p AS is_p FROM pg_temp.poll('et.one', 'et-w1', 10);
SELECT workflow.complete_task(:p, pg_temp.lease(:p));

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true)
  FROM (SELECT DISTINCT name FROM workflow.workflows WHERE name LIKE 'et\_%') w
 ORDER BY name;
DELETE FROM workflow.runners WHERE id LIKE 'et-%';
DELETE FROM workflow.task_types WHERE task_type LIKE 'et.%';
SELECT count(*) FROM workflow.jobs WHERE workflow LIKE 'et\_%';
SELECT count(*) FROM workflow.target_locks;
