--
-- Bulk enqueue (create_jobs) and idempotency keys that hold for as long as
-- their job exists (create_job and create_jobs), with every error message.
--
-- No runner executes jobs in this instance: jobs are claimed with run_job
-- and finished with finish_job.  Workflows are named bulk_*; the file drops
-- them at the end.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 2001 whatever ran before, so that the error
-- messages that name a job are stable
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 2001, false) AS first_job_id;

SELECT workflow.create_workflow('{"name": "bulk_a", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "bulk_b", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "bulk_ext", "chain": [{"name": "x", "task_type": "bulk.type"}]}');

-------------------------------------------------------------------------------
-- create_jobs: one job per element, the ids in the order of the elements
-------------------------------------------------------------------------------

SELECT id FROM workflow.create_jobs('bulk_a', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[],
                                    targets => ARRAY['t1', NULL, 't3'], priority => 5,
                                    run_at => '2100-01-01') WITH ORDINALITY AS c(id, o)
 ORDER BY o;
SELECT id, workflow, version, execution, params, target, priority, run_at = '2100-01-01' AS run_at_kept,
       task_type, idempotency_key, created_by = current_user::regrole AS mine, root_id = id AS root
  FROM workflow.jobs WHERE workflow = 'bulk_a' ORDER BY id;
-- the first task's type, as create_job sets it
SELECT count(*) FROM workflow.create_jobs('bulk_ext', ARRAY['{}', '{}']::jsonb[]);
SELECT task_type, count(*) FROM workflow.jobs WHERE workflow = 'bulk_ext' GROUP BY 1;
-- ids in input order also for many elements
CREATE TEMP TABLE bulk_ids AS
SELECT c.id, c.o
  FROM workflow.create_jobs('bulk_b', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 5000) i))
       WITH ORDINALITY AS c(id, o);
SELECT bool_and((j.params ->> 'i')::bigint = c.o) AS in_order, count(*)
  FROM bulk_ids c JOIN workflow.jobs j ON j.id = c.id;
DROP TABLE bulk_ids;
-- an empty params array: no job
SELECT count(*) FROM workflow.create_jobs('bulk_a', '{}'::jsonb[]);
-- targets and keys of the same length with NULL elements
SELECT count(*) FROM workflow.create_jobs('bulk_a', ARRAY['{"n": 4}', '{"n": 5}']::jsonb[],
                                          ARRAY[NULL, NULL]::text[], idempotency_keys => ARRAY[NULL, NULL]::text[]);

-------------------------------------------------------------------------------
-- idempotency keys in create_jobs
-------------------------------------------------------------------------------

-- the same key twice in a call: one job; a repeated call returns the same ids
SELECT array_agg(id ORDER BY o) AS first_ids
  FROM workflow.create_jobs('bulk_a', ARRAY['{"n": 10}', '{"n": 11}', '{"n": 10}', '{"n": 12}']::jsonb[],
                            idempotency_keys => ARRAY['k10', 'k11', 'k10', NULL]) WITH ORDINALITY AS c(id, o) \gset
SELECT :'first_ids';
SELECT array_agg(id ORDER BY o) = (:'first_ids'::bigint[])[1:3] AS same_ids
  FROM workflow.create_jobs('bulk_a', ARRAY['{"n": 10}', '{"n": 11}', '{"n": 10}']::jsonb[],
                            idempotency_keys => ARRAY['k10', 'k11', 'k10']) WITH ORDINALITY AS c(id, o);
SELECT idempotency_key, count(*) FROM workflow.jobs WHERE idempotency_key IN ('k10', 'k11') GROUP BY 1 ORDER BY 1;
-- a key created by create_job is the same key for create_jobs, and the
-- other way round
SELECT workflow.create_job('bulk_a', '{"n": 11}', idempotency_key => 'k11') = (:'first_ids'::bigint[])[2] AS same_job;
SELECT workflow.create_job('bulk_a', '{"n": 20}', idempotency_key => 'k20') AS k20 \gset
SELECT array_agg(id ORDER BY o) = ARRAY[:k20, (:'first_ids'::bigint[])[1]] AS same_jobs
  FROM workflow.create_jobs('bulk_a', ARRAY['{"n": 20}', '{"n": 10}']::jsonb[],
                            idempotency_keys => ARRAY['k20', 'k10']) WITH ORDINALITY AS c(id, o);
-- a key still holds once its job has finished
SELECT id = :k20, execution FROM workflow.run_job(:k20, 'bulk-runner');
SELECT execution FROM workflow.finish_job(:k20, 'bulk-runner', 'failed');
SELECT id = :k20 AS same_job FROM workflow.create_jobs('bulk_a', ARRAY['{"n": 20}']::jsonb[], idempotency_keys => ARRAY['k20']) AS c(id);

-- conflicts: the whole call fails and creates nothing
SELECT count(*) AS jobs_before FROM workflow.jobs \gset
-- with a job that holds the key
SELECT workflow.create_jobs('bulk_a', ARRAY['{"n": 30}', '{"n": 99}']::jsonb[], idempotency_keys => ARRAY['k30', 'k20']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_b', ARRAY['{"n": 20}']::jsonb[], idempotency_keys => ARRAY['k20']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{"n": 20}']::jsonb[], ARRAY['t20'], idempotency_keys => ARRAY['k20']);
\echo :LAST_ERROR_SQLSTATE
-- two elements of the call
SELECT workflow.create_jobs('bulk_a', ARRAY['{"n": 31}', '{"n": 32}', '{"n": 33}']::jsonb[],
                            idempotency_keys => ARRAY['k31', 'k32', 'k31']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{"n": 31}', '{"n": 31}']::jsonb[], ARRAY['a', 'b'],
                            idempotency_keys => ARRAY['k31', 'k31']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) - :jobs_before AS jobs_created FROM workflow.jobs;

-------------------------------------------------------------------------------
-- idempotency keys in create_job: the same request returns the job, another
-- one is an error
-------------------------------------------------------------------------------

SELECT workflow.create_job('bulk_a', '{"n": 40}', target => 'c40', idempotency_key => 'k40') AS k40 \gset
SELECT workflow.cancel_job(:k40);
SELECT workflow.create_job('bulk_a', '{"n": 40}', target => 'c40', idempotency_key => 'k40', priority => 3) = :k40 AS same_job;
SELECT workflow.create_job('bulk_a', '{"n": 41}', target => 'c40', idempotency_key => 'k40');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('bulk_b', '{"n": 40}', target => 'c40', idempotency_key => 'k40');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('bulk_a', '{"n": 40}', idempotency_key => 'k40');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_job('bulk_a', '{"n": 40}', target => 'c41', idempotency_key => 'k40');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_workflow('{"name": "bulk_a", "chain": [{"name": "a2", "sql": "select 2"}]}');
SELECT workflow.create_job('bulk_a', '{"n": 40}', target => 'c40', idempotency_key => 'k40', version => 2);
\echo :LAST_ERROR_SQLSTATE
-- without a version, the job of version 1 is the same request
SELECT workflow.create_job('bulk_a', '{"n": 40}', target => 'c40', idempotency_key => 'k40') = :k40 AS same_job;
SELECT count(*) FROM workflow.jobs WHERE idempotency_key = 'k40';

-------------------------------------------------------------------------------
-- bad input: each error, nothing created
-------------------------------------------------------------------------------

SELECT count(*) AS jobs_before FROM workflow.jobs \gset
SELECT workflow.create_jobs(NULL, ARRAY['{}']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}']::jsonb[], run_at => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}']::jsonb[], priority => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY[['{}', '{}'], ['{}', '{}']]::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], ARRAY[['a'], ['b']]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', array_fill('{}'::jsonb, ARRAY[100001]));
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], ARRAY['a']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], idempotency_keys => ARRAY['a', 'b', 'c']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], '{}'::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', NULL]::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}', '[1, 2]']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['"x"']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', 'null']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], ARRAY['a', '']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], idempotency_keys => ARRAY['', 'b']);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], ARRAY['a', repeat('t', 1001)]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', '{}']::jsonb[], idempotency_keys => ARRAY[NULL, repeat('k', 1001)]);
\echo :LAST_ERROR_SQLSTATE
SET workflow.max_payload_size = '1kB';
SELECT workflow.create_jobs('bulk_a', ARRAY['{}', jsonb_build_object('blob', repeat('x', 2000))]::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
RESET workflow.max_payload_size;
SELECT workflow.create_jobs('bulk_nope', ARRAY['{}']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_nope', '{}'::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.create_jobs('bulk_a', ARRAY['{}']::jsonb[], run_at => 'infinity');
\echo :LAST_ERROR_SQLSTATE
-- the longest target and key, and characters rather than bytes
SELECT count(*) FROM workflow.create_jobs('bulk_b', ARRAY['{}']::jsonb[], ARRAY[repeat('t', 1000)],
                                          idempotency_keys => ARRAY[repeat('é', 1000)]);
SELECT count(*) - :jobs_before AS jobs_created FROM workflow.jobs;

-------------------------------------------------------------------------------
-- roles that are not administrators: priority and run_at as in create_job;
-- jobs and keys are the caller's
-------------------------------------------------------------------------------

CREATE ROLE bulk_alice LOGIN IN ROLE workflow_user;
CREATE ROLE bulk_nolog NOLOGIN IN ROLE workflow_user;
SET ROLE bulk_alice;
SELECT workflow.create_jobs('bulk_a', ARRAY['{}']::jsonb[], priority => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.create_jobs('bulk_a', ARRAY['{"who": "alice"}', '{"who": "alice"}']::jsonb[],
                                          run_at => '2000-01-01', idempotency_keys => ARRAY['k10', 'k11']);
SELECT params, run_at > '2020-01-01' AS clamped_to_now, created_by::text, idempotency_key
  FROM workflow.jobs ORDER BY id;
RESET ROLE;
SET ROLE bulk_nolog;
SELECT workflow.create_jobs('bulk_a', ARRAY['{}']::jsonb[]);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM workflow.jobs WHERE created_by = 'bulk_alice'::regrole;
DROP ROLE bulk_alice;
DROP ROLE bulk_nolog;

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------

SELECT workflow.drop_workflow(name, force => true)
  FROM (SELECT DISTINCT name FROM workflow.workflows WHERE name LIKE 'bulk\_%') w
 ORDER BY name;
DELETE FROM workflow.runners WHERE id = 'bulk-runner';
SELECT count(*) FROM workflow.jobs WHERE workflow LIKE 'bulk\_%';
