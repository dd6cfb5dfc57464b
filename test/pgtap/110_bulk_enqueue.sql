-- 110_bulk_enqueue.sql: workflow.create_jobs and idempotency keys that
-- hold.  create_jobs returns the ids in the order of the elements, checks
-- each element as create_job checks its arguments (the same SQLSTATEs),
-- makes one job of the elements that share a key, returns the job that
-- holds a key (also once it has finished) and refuses another request with
-- the key (23505, nothing created); roles that are not administrators get
-- create_job's priority and run_at rules; the jobs and the keys are the
-- caller's (row-level security).
--
-- No background runner runs in the pgTAP cluster: jobs are claimed with
-- run_job and finished with finish_job.

BEGIN;
SELECT plan(36);

SET LOCAL search_path = public, pg_catalog;

CREATE ROLE bulk_alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE bulk_bob LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO bulk_alice, bulk_bob;

-- Run p_sql as p_role and keep its effects; the first column of its first
-- row as text.
CREATE FUNCTION pg_temp.as_role(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_sql INTO r;
    RESET ROLE;
    RETURN r;
END
$$;

-- The SQLSTATE of p_sql run as the current role, or 'ok' (effects always
-- rolled back).
CREATE FUNCTION pg_temp.state_of(p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE p_sql;
        RAISE EXCEPTION USING ERRCODE = 'P0004';
    EXCEPTION WHEN assert_failure THEN
        RETURN 'ok';
    WHEN OTHERS THEN
        RETURN SQLSTATE;
    END;
END
$$;

SELECT workflow.create_workflow('{"name": "bk_a", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.create_workflow('{"name": "bk_b", "chain": [{"name": "a", "sql": "select 1"}]}');

-------------------------------------------------------------------------------
-- Order of the ids
-------------------------------------------------------------------------------

CREATE TEMP TABLE ids AS
SELECT c.id, c.o FROM workflow.create_jobs('bk_a', ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}', '{"i": 4}']::jsonb[],
                                           ARRAY['t1', NULL, 't3', NULL]) WITH ORDINALITY AS c(id, o);
SELECT is((SELECT array_agg((j.params ->> 'i')::bigint ORDER BY i.o) FROM ids i JOIN workflow.jobs j ON j.id = i.id),
          '{1,2,3,4}'::bigint[], 'the ids come in the order of the elements');
SELECT is((SELECT array_agg(j.target ORDER BY i.o) FROM ids i JOIN workflow.jobs j ON j.id = i.id),
          ARRAY['t1', NULL, 't3', NULL], 'each job has the target of its element');
SELECT is((SELECT count(DISTINCT id) FROM ids), 4::bigint, 'four elements, four jobs');
-- many elements, and params built in the statement
CREATE TEMP TABLE many AS
SELECT c.id, c.o FROM workflow.create_jobs('bk_b', ARRAY(SELECT jsonb_build_object('i', g) FROM generate_series(1, 3000) g))
       WITH ORDINALITY AS c(id, o);
SELECT is((SELECT count(*) FILTER (WHERE (j.params ->> 'i')::bigint = m.o) FROM many m JOIN workflow.jobs j ON j.id = m.id),
          3000::bigint, '3000 elements: each id is the job of its element');

-------------------------------------------------------------------------------
-- The checks of create_job, element by element
-------------------------------------------------------------------------------

SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}', '[1]']::jsonb[])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', '[1]')$$), 'params not an object: as create_job (22023)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}', NULL]::jsonb[])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', NULL)$$), 'NULL params: as create_job (22004)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}', '{}']::jsonb[], ARRAY['x', ''])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', target => '')$$), 'empty target: as create_job (22023)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}']::jsonb[], idempotency_keys => ARRAY[''])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', idempotency_key => '')$$), 'empty key: as create_job (22023)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}']::jsonb[], ARRAY[repeat('t', 1001)])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', target => repeat('t', 1001))$$), 'long target: as create_job (54000)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}']::jsonb[], idempotency_keys => ARRAY[repeat('k', 1001)])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', idempotency_key => repeat('k', 1001))$$), 'long key: as create_job (54000)');
SET LOCAL workflow.max_payload_size = '1kB';
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY[jsonb_build_object('b', repeat('x', 2000))])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', jsonb_build_object('b', repeat('x', 2000)))$$),
          'payload too large: as create_job (54000)');
RESET workflow.max_payload_size;
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_nope', ARRAY['{}']::jsonb[])$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_nope')$$), 'unknown workflow: as create_job (42704)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}']::jsonb[], run_at => 'infinity')$$),
          pg_temp.state_of($$SELECT workflow.create_job('bk_a', run_at => 'infinity')$$), 'infinite run_at: as create_job (22023)');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', ARRAY['{}', '{}']::jsonb[], ARRAY['x'])$$),
          '22023', 'arrays of different lengths: 22023');
SELECT is(pg_temp.state_of($$SELECT workflow.create_jobs('bk_a', array_fill('{}'::jsonb, ARRAY[100001]))$$),
          '54000', 'more than 100000 elements: 54000');
SELECT is((SELECT count(*) FROM workflow.create_jobs('bk_a', '{}'::jsonb[])), 0::bigint, 'no element: no job');

-------------------------------------------------------------------------------
-- Idempotency keys
-------------------------------------------------------------------------------

CREATE TEMP TABLE keyed AS
SELECT c.id, c.o FROM workflow.create_jobs('bk_a', ARRAY['{"k": 1}', '{"k": 2}', '{"k": 1}', '{"k": 3}']::jsonb[],
                                           idempotency_keys => ARRAY['ka', 'kb', 'ka', NULL]) WITH ORDINALITY AS c(id, o);
SELECT is((SELECT (array_agg(id ORDER BY o))[1] = (array_agg(id ORDER BY o))[3] FROM keyed), true,
          'two elements with one key: the same job');
SELECT is((SELECT count(DISTINCT id) FROM keyed), 3::bigint, 'four elements, one key twice: three jobs');
SELECT is((SELECT count(*) FROM workflow.jobs WHERE idempotency_key = 'ka'), 1::bigint, 'one job holds the key');
SELECT is(ARRAY(SELECT c.id FROM workflow.create_jobs('bk_a', ARRAY['{"k": 2}', '{"k": 1}']::jsonb[],
                                                       idempotency_keys => ARRAY['kb', 'ka']) WITH ORDINALITY AS c(id, o)
                ORDER BY c.o),
          ARRAY[(SELECT id FROM keyed WHERE o = 2), (SELECT id FROM keyed WHERE o = 1)],
          'the keys again, in another order: their jobs, in that order');
SELECT is(workflow.create_job('bk_a', '{"k": 2}', idempotency_key => 'kb'), (SELECT id FROM keyed WHERE o = 2),
          'create_job with a key of create_jobs: its job');
-- the key holds after its job has finished
SELECT (SELECT id FROM keyed WHERE o = 2) AS kb_id \gset
SELECT is((workflow.run_job(:kb_id, 'bk-runner')).execution, 'running', 'the job of kb runs');
SELECT is((workflow.finish_job(:kb_id, 'bk-runner', 'succeeded')).execution, 'succeeded', 'and succeeds');
SELECT is((SELECT c.id FROM workflow.create_jobs('bk_a', ARRAY['{"k": 2}']::jsonb[], idempotency_keys => ARRAY['kb']) AS c(id)),
          :kb_id::bigint, 'after its job succeeded, the key returns that job');
-- another request with a key: 23505, nothing created
SELECT count(*) AS jobs_before FROM workflow.jobs \gset
SELECT throws_ok($$SELECT workflow.create_jobs('bk_a', ARRAY['{"new": 1}', '{"k": 9}']::jsonb[], idempotency_keys => ARRAY['kz', 'kb'])$$,
                 '23505', format('idempotency key "kb" is already used by job %s', :kb_id),
                 'create_jobs: other params with a held key: 23505');
SELECT throws_ok($$SELECT workflow.create_jobs('bk_b', ARRAY['{"k": 2}']::jsonb[], idempotency_keys => ARRAY['kb'])$$,
                 '23505', NULL, 'create_jobs: another workflow with a held key: 23505');
SELECT throws_ok($$SELECT workflow.create_job('bk_a', '{"k": 2}', target => 'x', idempotency_key => 'kb')$$,
                 '23505', NULL, 'create_job: another target with a held key: 23505');
SELECT throws_ok($$SELECT workflow.create_jobs('bk_a', ARRAY['{"k": 7}', '{"k": 8}']::jsonb[], idempotency_keys => ARRAY['kn', 'kn'])$$,
                 '23505', 'idempotency key "kn" is given to elements 1 and 2 for different jobs',
                 'create_jobs: one key for two different elements: 23505');
SELECT is((SELECT count(*) FROM workflow.jobs), :jobs_before::bigint, 'the refused calls created nothing');

-------------------------------------------------------------------------------
-- Roles that are not administrators; the jobs and keys are the caller's
-------------------------------------------------------------------------------

SELECT throws_ok($$SELECT pg_temp.as_role('bulk_alice', 'SELECT workflow.create_jobs(''bk_a'', ARRAY[''{}'']::jsonb[], priority => 1)')$$,
                 '42501', NULL, 'a user: a priority above workflow.max_user_priority: 42501');
SELECT pg_temp.as_role('bulk_alice', $$SELECT '{' || string_agg(id::text, ',') || '}' FROM workflow.create_jobs('bk_a',
           ARRAY['{"who": "alice"}', '{"who": "alice2"}']::jsonb[], run_at => '2000-01-01',
           idempotency_keys => ARRAY['ka', NULL]) AS c(id)$$) AS alice_ids \gset
SELECT is((SELECT count(*) FROM workflow.jobs WHERE id = ANY (:'alice_ids'::bigint[]) AND run_at > now() - interval '1 minute'),
          2::bigint, 'a user: a run_at in the past is now');
SELECT is((SELECT array_agg(DISTINCT created_by::text) FROM workflow.jobs WHERE id = ANY (:'alice_ids'::bigint[])),
          '{bulk_alice}'::text[], 'the jobs are the caller''s');
SELECT isnt((SELECT id FROM workflow.jobs WHERE id = ANY (:'alice_ids'::bigint[]) AND idempotency_key = 'ka'),
            (SELECT id FROM keyed WHERE o = 1), 'the key "ka" of alice is not the key "ka" of the administrator');
SELECT is(pg_temp.as_role('bulk_bob', format('SELECT count(*) FROM workflow.jobs WHERE id = ANY (%L)', :'alice_ids')),
          '0', 'bob does not see alice''s jobs (row-level security)');
SELECT is(pg_temp.as_role('bulk_alice', 'SELECT count(*) FROM workflow.jobs'), '2', 'alice sees her two jobs only');
SELECT is(pg_temp.as_role('bulk_alice', $$SELECT min(c.id) FROM workflow.create_jobs('bk_a', ARRAY['{"who": "alice"}']::jsonb[], idempotency_keys => ARRAY['ka']) AS c(id)$$),
          (SELECT min(id)::text FROM workflow.jobs WHERE id = ANY (:'alice_ids'::bigint[])),
          'alice''s key returns alice''s job');

SELECT * FROM finish();
ROLLBACK;
