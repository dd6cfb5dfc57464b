--
-- The runner protocol (node-workflow backend calls): next_jobs, run_job,
-- finish_job, lock by target, register_runner / runner_active,
-- inactive_runners / stale_jobs, and the views job_summary and
-- runner_status.
--
-- No runner executes jobs in this instance.  Workflows are named rp_*,
-- runners rp-*; the file removes them at the end.  Jobs are shown by a
-- label stored in their params, never by id.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 3001 whatever ran before, so that the error
-- messages that name a job are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 3001, false) AS first_job_id;

SELECT workflow.create_workflow('{"name": "rp_sql", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "rp_ext", "chain": [{"name": "x", "task_type": "rp.type"}]}');
SELECT workflow.create_workflow($${"name": "rp_two",
  "chain": [{"name": "first", "wait": "signal"}, {"name": "second", "sql": "select 2"}]}$$);
SELECT workflow.create_workflow($${"name": "rp_oc",
  "chain": [{"name": "a", "sql": "select 1"}], "oncancel": [{"name": "undo", "sql": "select 1"}]}$$);

-- the labels of a list of job ids, in list order
CREATE FUNCTION pg_temp.labels(ids bigint[]) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(j.params ->> 'l', ' ' ORDER BY n.o), '(none)')
      FROM unnest(ids) WITH ORDINALITY n(id, o) JOIN workflow.jobs j ON j.id = n.id
$$;

-------------------------------------------------------------------------------
-- next_jobs: claim order and windows
-------------------------------------------------------------------------------

SELECT workflow.create_job('rp_sql', '{"l": "A"}', run_at => '2020-01-01 00:00:10+00') AS a \gset
SELECT workflow.create_job('rp_sql', '{"l": "B"}', run_at => '2020-01-01 00:00:20+00', priority => 5) AS b \gset
SELECT workflow.create_job('rp_sql', '{"l": "C"}', run_at => '2020-01-01 00:00:05+00', priority => 5) AS c \gset
SELECT workflow.create_job('rp_sql', '{"l": "D"}', run_at => '2020-01-01 00:00:10+00') AS d \gset
SELECT workflow.create_job('rp_sql', '{"l": "E"}', run_at => now() + interval '1 day', priority => 9) AS e \gset
SELECT workflow.create_job('rp_sql', '{"l": "F"}', priority => -1) AS f \gset
SELECT workflow.create_job('rp_ext', '{"l": "G"}') AS g \gset
SELECT workflow.create_job('rp_ext', '{"l": "H"}', priority => 1) AS h \gset

-- priority DESC, then run_at, then id; E is not due; G and H are external
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
-- rows start..stop, 0-based and inclusive
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 0))) AS "0..0";
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(1, 2))) AS "1..2";
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(3, 10))) AS "3..10";
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(5, 5))) AS "5..5";
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 9999))) AS "0..9999";
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(2147483647, 2147483647))) AS "max..max";
-- the queue of an external task type
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99, 'rp.type'))) AS "rp.type";
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99, 'rp.other'))) AS "rp.other";
-- E becomes due
UPDATE workflow.jobs SET run_at = now() - interval '1 s' WHERE id = :e;
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;

-- bad ranges
SELECT workflow.next_jobs(NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.next_jobs(0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.next_jobs(-1, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.next_jobs(5, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.next_jobs(0, 10000);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.next_jobs(10, 2147483647);
\echo :LAST_ERROR_SQLSTATE

-------------------------------------------------------------------------------
-- run_job
-------------------------------------------------------------------------------

-- claims the job: running, with the runner and a lease
SELECT id = :e AS is_e, execution, runner_id, lease IS NOT NULL AS has_lease,
       started_at IS NOT NULL AS started, phase, step
  FROM workflow.run_job(:e, 'rp-1');
-- it is no longer listed
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
-- a second claim gets NULL, by the same or another runner
SELECT (workflow.run_job(:e, 'rp-2')) IS NULL AS taken;
SELECT (workflow.run_job(:e, 'rp-1')) IS NULL AS taken;
SELECT execution, runner_id FROM workflow.jobs WHERE id = :e;
-- a job that is not due yet is not claimed
SELECT workflow.create_job('rp_sql', '{"l": "later"}', run_at => now() + interval '1 hour') AS later \gset
SELECT (workflow.run_job(:later, 'rp-1')) IS NULL AS not_due;
SELECT execution FROM workflow.jobs WHERE id = :later;
-- the runner was recorded by its first claim, and holds a job
SELECT id, kind, idle FROM workflow.runner_status WHERE id LIKE 'rp-%' ORDER BY id;

-- unknown job, bad runner ids
SELECT workflow.run_job(999999999, 'rp-1');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.run_job(NULL, 'rp-1');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.run_job(:b, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.run_job(:b, '');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.run_job(:b, repeat('r', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.run_job(:b, E'rp\n1');
\echo :LAST_ERROR_SQLSTATE
SELECT execution FROM workflow.jobs WHERE id = :b;
-- 200 printable characters are a valid runner id
SELECT execution, length(runner_id) FROM workflow.run_job(:b, repeat('r', 200));
DELETE FROM workflow.runners WHERE id = repeat('r', 200);

-------------------------------------------------------------------------------
-- finish_job
-------------------------------------------------------------------------------

-- only the runner that holds the job finishes it
SELECT workflow.finish_job(:e, 'rp-2', 'succeeded');
\echo :LAST_ERROR_SQLSTATE
-- only as a terminal state
SELECT workflow.finish_job(:e, 'rp-1', 'queued');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(:e, 'rp-1', 'running');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(:e, 'rp-1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(:e, 'rp-1', 'done');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(:e, NULL, 'succeeded');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(NULL, 'rp-1', 'succeeded');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(999999999, 'rp-1', 'succeeded');
\echo :LAST_ERROR_SQLSTATE
-- a queued job is not finished by a runner
SELECT workflow.finish_job(:a, 'rp-1', 'succeeded');
\echo :LAST_ERROR_SQLSTATE
SET workflow.max_payload_size = '1kB';
SELECT workflow.finish_job(:e, 'rp-1', 'succeeded', jsonb_build_object('blob', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
RESET workflow.max_payload_size;
-- the job is still running for rp-1
SELECT execution, runner_id, finished_at FROM workflow.jobs WHERE id = :e;

-- succeeded with a result
SELECT execution, result, error, lease, finished_at IS NOT NULL AS finished
  FROM workflow.finish_job(:e, 'rp-1', 'succeeded', '{"ok": true}');
SELECT finished_at AS e_finished FROM workflow.jobs WHERE id = :e \gset
-- a repeated identical call returns the job unchanged
SELECT execution, result, finished_at = :'e_finished' AS unchanged
  FROM workflow.finish_job(:e, 'rp-1', 'succeeded', '{"ok": true}');
-- a finished job cannot be overwritten
SELECT workflow.finish_job(:e, 'rp-1', 'failed');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(:e, 'rp-1', 'succeeded', '{"ok": false}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.finish_job(:e, 'rp-2', 'succeeded', '{"ok": true}');
\echo :LAST_ERROR_SQLSTATE
SELECT execution, result, finished_at = :'e_finished' AS unchanged FROM workflow.jobs WHERE id = :e;

-- failed with a result: the result is the error; repeated: unchanged
SELECT execution, result, error FROM workflow.finish_job(:b, repeat('r', 200), 'failed', '{"why": "disk full"}');
SELECT execution, result, error FROM workflow.finish_job(:b, repeat('r', 200), 'failed', '{"why": "disk full"}');
-- canceled without a result; repeated: unchanged
SELECT execution FROM workflow.run_job(:c, 'rp-1');
SELECT execution, result, error FROM workflow.finish_job(:c, 'rp-1', 'canceled');
SELECT execution, result, error FROM workflow.finish_job(:c, 'rp-1', 'canceled');
SELECT workflow.finish_job(:c, 'rp-1', 'succeeded');
\echo :LAST_ERROR_SQLSTATE

-- a job canceled while it runs goes to its oncancel chain: the runner's late
-- report for the chain task is refused, and finishing the oncancel chain
-- ends the job canceled, not succeeded
SELECT workflow.create_job('rp_oc', '{"l": "OC"}') AS oc \gset
SELECT execution FROM workflow.run_job(:oc, 'rp-1');
SELECT workflow.cancel_job(:oc, 'user request');
SELECT execution, phase, runner_id FROM workflow.jobs WHERE id = :oc;
SELECT workflow.finish_job(:oc, 'rp-1', 'succeeded');
\echo :LAST_ERROR_SQLSTATE
SELECT execution, phase FROM workflow.run_job(:oc, 'rp-1');
SELECT execution, phase, error ->> 'message' AS message, error ->> 'reason' AS reason
  FROM workflow.finish_job(:oc, 'rp-1', 'succeeded');

-- clear the queue for what follows
SELECT count(*) FILTER (WHERE workflow.cancel_job(id)) AS canceled
  FROM workflow.jobs WHERE workflow IN ('rp_sql', 'rp_ext') AND execution = 'queued';
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;

-------------------------------------------------------------------------------
-- Lock by target
-------------------------------------------------------------------------------

SELECT workflow.create_job('rp_two', '{"l": "T1"}', target => 'acct-1') AS t1 \gset
SELECT workflow.create_job('rp_two', '{"l": "T2"}', target => 'acct-1') AS t2 \gset
SELECT workflow.create_job('rp_two', '{"l": "U1"}', target => 'acct-2') AS u1 \gset
SELECT workflow.create_job('rp_two', '{"l": "N1"}') AS n1 \gset
-- only the first job of a target is listed and claimable
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT (workflow.run_job(:t2, 'rp-1')) IS NULL AS not_claimable;
SELECT execution FROM workflow.jobs WHERE id = :t2;
SELECT execution FROM workflow.run_job(:t1, 'rp-1');
SELECT target, job_id = :t1 AS held_by_t1 FROM workflow.target_locks WHERE target LIKE 'acct-%' ORDER BY target;
-- while T1 runs, T2 stays queued and unlisted, even with a higher priority
SELECT workflow.create_job('rp_two', '{"l": "T3"}', target => 'acct-1', priority => 100) AS t3 \gset
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT (workflow.run_job(:t3, 'rp-2')) IS NULL AS not_claimable;
-- T1 keeps its target between its tasks: it waits, is resumed and queued
-- for its second task, and is still the only runnable job of acct-1
UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity' WHERE id = :t1;
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT workflow.resume_job(:t1, '{"first": "done"}');
SELECT execution, step FROM workflow.jobs WHERE id = :t1;
SELECT target, job_id = :t1 AS held_by_t1 FROM workflow.target_locks WHERE target = 'acct-1';
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT (workflow.run_job(:t3, 'rp-2')) IS NULL AS not_claimable;
SELECT execution, step FROM workflow.run_job(:t1, 'rp-1');
-- T1 finishes: the target is free; the next job of acct-1 in claim order (T3,
-- priority 100) is runnable, T2 still waits for it
SELECT execution FROM workflow.finish_job(:t1, 'rp-1', 'succeeded');
SELECT count(*) FROM workflow.target_locks WHERE target = 'acct-1';
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT (workflow.run_job(:t2, 'rp-1')) IS NULL AS not_claimable;
SELECT execution FROM workflow.run_job(:t3, 'rp-2');
-- a job canceled while holding its target releases it
SELECT workflow.cancel_job(:t3);
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT execution FROM workflow.run_job(:t2, 'rp-1');
SELECT execution FROM workflow.finish_job(:t2, 'rp-1', 'failed');
SELECT count(*) FROM workflow.target_locks WHERE target = 'acct-1';
-- the other target and the job without target were never blocked
SELECT pg_temp.labels(ARRAY(SELECT workflow.next_jobs(0, 99))) AS sql_queue;
SELECT count(*) FILTER (WHERE workflow.cancel_job(id)) AS canceled
  FROM workflow.jobs WHERE workflow = 'rp_two' AND execution = 'queued';
SELECT count(*) FROM workflow.target_locks WHERE target LIKE 'acct-%';

-------------------------------------------------------------------------------
-- register_runner / runner_active
-------------------------------------------------------------------------------

SELECT workflow.register_runner('rp-ext');
-- the kinds of the in-server workers are theirs alone: an SQL caller (even
-- a superuser) registers external workers only
SELECT workflow.register_runner('rp-bg', 'runner');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner('rp-sweeper', 'sweeper');
\echo :LAST_ERROR_SQLSTATE
-- rows of those kinds, written here as the in-server workers would
INSERT INTO workflow.runners (id, kind, pid, owner)
VALUES ('rp-bg', 'runner', pg_backend_pid(), to_regrole(current_user)),
       ('rp-sweeper', 'sweeper', pg_backend_pid(), to_regrole(current_user));
SELECT id, kind, pid = pg_backend_pid() AS my_pid,
       owner = to_regrole(current_user) AS mine FROM workflow.runners
 WHERE id IN ('rp-ext', 'rp-bg', 'rp-sweeper') ORDER BY id;
-- heartbeat
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'rp-ext';
SELECT workflow.runner_active('rp-ext');
SELECT active_at > now() - interval '1 minute' AS fresh FROM workflow.runners WHERE id = 'rp-ext';
-- registering again (after a restart) resets it
UPDATE workflow.runners SET started_at = now() - interval '1 hour' WHERE id = 'rp-ext';
SELECT workflow.register_runner('rp-ext', 'external');
SELECT started_at > now() - interval '1 minute' AS restarted FROM workflow.runners WHERE id = 'rp-ext';
-- no SQL caller takes over the id of an in-server worker
SELECT workflow.register_runner('rp-bg', 'external');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.runner_active('rp-bg');
\echo :LAST_ERROR_SQLSTATE
SELECT id, kind FROM workflow.runners WHERE id = 'rp-bg';

SELECT workflow.runner_active('rp-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.runner_active(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.runner_active('');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner('rp-x', 'worker');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner('rp-x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.register_runner(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.runners WHERE id = 'rp-x' OR id LIKE 'xxx%';

-------------------------------------------------------------------------------
-- inactive_runners / stale_jobs
-------------------------------------------------------------------------------

-- workflow.stale_after is a server setting (reload), not a session one
SHOW workflow.stale_after;
-- nobody is silent yet
SELECT id FROM workflow.inactive_runners() WHERE id LIKE 'rp-%' ORDER BY id;

-- running jobs: one per case
SELECT workflow.create_job('rp_sql', '{"l": "S-ext"}') AS s_ext \gset
SELECT workflow.create_job('rp_sql', '{"l": "S-bg"}') AS s_bg \gset
SELECT workflow.create_job('rp_sql', '{"l": "S-ghost-old"}') AS s_ghost_old \gset
SELECT workflow.create_job('rp_sql', '{"l": "S-ghost-new"}') AS s_ghost_new \gset
SELECT workflow.create_job('rp_sql', '{"l": "S-lease"}') AS s_lease \gset
SELECT workflow.create_job('rp_sql', '{"l": "S-fine"}') AS s_fine \gset
SELECT execution FROM workflow.run_job(:s_ext, 'rp-ext');
-- an SQL caller cannot claim under an in-server worker's id: claimed
-- under another id, then handed to it as the in-server runner would
SELECT execution FROM workflow.run_job(:s_bg, 'rp-bg');
\echo :LAST_ERROR_SQLSTATE
SELECT execution FROM workflow.run_job(:s_bg, 'x-claim');
SELECT execution FROM workflow.run_job(:s_lease, 'x-claim');
SELECT execution FROM workflow.run_job(:s_fine, 'x-claim');
UPDATE workflow.jobs SET runner_id = 'rp-bg' WHERE id = :s_bg;
UPDATE workflow.jobs SET runner_id = 'rp-sweeper' WHERE id IN (:s_lease, :s_fine);
DELETE FROM workflow.runners WHERE id = 'x-claim';
SELECT execution FROM workflow.run_job(:s_ghost_old, 'rp-ghost');
SELECT execution FROM workflow.run_job(:s_ghost_new, 'rp-ghost');
-- rp-ghost is not registered; one of its jobs was claimed long ago
DELETE FROM workflow.runners WHERE id = 'rp-ghost';
UPDATE workflow.jobs SET started_at = now() - interval '1 hour', claimed_at = now() - interval '1 hour' WHERE id = :s_ghost_old;
-- a lease that expired
UPDATE workflow.jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :s_lease;
SELECT pg_temp.labels(ARRAY(SELECT id FROM workflow.stale_jobs())) AS stale;

-- an external runner silent for longer than stale_after is inactive, and
-- its running jobs are stale
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'rp-ext';
-- an in-server runner silent for as long, whose process is alive, is not
UPDATE workflow.runners SET active_at = now() - interval '1 hour' WHERE id = 'rp-bg';
SELECT id, kind FROM workflow.inactive_runners() WHERE id LIKE 'rp-%' ORDER BY id;
SELECT pg_temp.labels(ARRAY(SELECT id FROM workflow.stale_jobs())) AS stale;
-- ... but it is once its process is gone
UPDATE workflow.runners SET pid = NULL WHERE id = 'rp-bg';
SELECT id, kind FROM workflow.inactive_runners() WHERE id LIKE 'rp-%' ORDER BY id;
-- ... or when its pid belongs to a process started after the runner
-- registered (the pid was reused)
UPDATE workflow.runners SET pid = pg_backend_pid(), started_at = now() - interval '1 day'
 WHERE id = 'rp-bg';
SELECT id, kind FROM workflow.inactive_runners() WHERE id LIKE 'rp-%' ORDER BY id;
SELECT pg_temp.labels(ARRAY(SELECT id FROM workflow.stale_jobs())) AS stale;
-- a heartbeat makes a runner active again
SELECT workflow.runner_active('rp-ext');
SELECT id, kind FROM workflow.inactive_runners() WHERE id LIKE 'rp-%' ORDER BY id;
SELECT pg_temp.labels(ARRAY(SELECT id FROM workflow.stale_jobs())) AS stale;

-------------------------------------------------------------------------------
-- Views
-------------------------------------------------------------------------------

SELECT workflow, execution, jobs, last_hour FROM workflow.job_summary
 WHERE workflow LIKE 'rp\_%' ORDER BY workflow, execution;
SELECT jsonb_typeof(to_jsonb(duration_p50)) AS duration_p50
  FROM workflow.job_summary WHERE workflow = 'rp_sql' AND execution = 'succeeded';
SELECT id, kind, alive, idle, running_jobs,
       current_job IS NOT NULL AS has_job, pid = pg_backend_pid() AS my_pid
  FROM workflow.runner_status WHERE id LIKE 'rp-%' ORDER BY id;
SELECT current_job = :s_lease AS lowest_job FROM workflow.runner_status WHERE id = 'rp-sweeper';

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true)
  FROM (SELECT DISTINCT name FROM workflow.workflows WHERE name LIKE 'rp\_%') w
 ORDER BY name;
DELETE FROM workflow.runners WHERE id LIKE 'rp-%';
SELECT count(*) FROM workflow.jobs WHERE workflow LIKE 'rp\_%';
SELECT count(*) FROM workflow.target_locks;
