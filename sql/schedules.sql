--
-- Schedules: workflow.schedule, workflow.unschedule and the workflow.schedules
-- view on top of pg_cron (README "Operations", schedules), and the
-- next-run computation workflow._cron_next.
--
-- test/conf/regress.conf preloads pg_cron with cron.database_name =
-- 'contrib_regression'; this file first uses the functions without the
-- extension, then creates it.  No schedule is ever left to fire: the file
-- runs what pg_cron would run itself, and removes every schedule (and the
-- extension) at the end.  Times are printed in UTC or compared, never
-- printed as they are now.
--
\set SHOW_CONTEXT never

-- job ids of this file start at 5001 whatever ran before
SELECT setval(pg_get_serial_sequence('workflow.jobs', 'id'), 5001, false) AS first_job_id;

SELECT workflow.create_workflow('{"name": "wf", "chain": [{"name": "a", "sql": "select 1"}]}');

CREATE ROLE regress_sched_user LOGIN;
GRANT workflow_user TO regress_sched_user;

-------------------------------------------------------------------------------
-- Without pg_cron: a clear error with a hint
-------------------------------------------------------------------------------

SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron';
SELECT workflow.schedule('nightly', '0 3 * * *', 'wf', '{"a": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.unschedule('nightly');
\echo :LAST_ERROR_SQLSTATE
-- the view is empty, not an error
SELECT count(*) FROM workflow.schedules;
-- the arguments are checked first all the same
SELECT workflow.schedule('nightly', '0 3 * * *', 'no_such_workflow');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_sched_user;
SELECT workflow.schedule('nightly', '0 3 * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.schedules;
RESET ROLE;

CREATE EXTENSION pg_cron;

-------------------------------------------------------------------------------
-- schedule
-------------------------------------------------------------------------------

SELECT workflow.schedule('nightly', '0 3 * * *', 'wf', '{"a":1}') AS nightly_id \gset
SELECT :nightly_id > 0 AS got_a_cron_job_id;
-- the pg_cron job: its name, schedule, command, database and role
SELECT jobname, schedule, command, database = current_database() AS this_database,
       username = current_user AS mine, active
  FROM cron.job WHERE jobid = :nightly_id;

-- what pg_cron runs at 03:00 creates the job, as the role that scheduled it
SELECT command AS nightly_command FROM cron.job WHERE jobid = :nightly_id \gset
:nightly_command AS cron_job \gset
SELECT workflow, version, execution, params, created_by = current_user::regrole AS mine
  FROM workflow.jobs WHERE id = :cron_job;

-- the view
SELECT name, cron, workflow, params, active, owner = current_user AS mine,
       cron_job_id = :nightly_id AS same_id,
       last_run_started, last_run_finished, last_run_status, last_run_message
  FROM workflow.schedules;
-- next_run: the next 03:00 UTC after now
SELECT next_run = (SELECT CASE WHEN d + interval '3 hours' > now() AT TIME ZONE 'UTC'
                               THEN d + interval '3 hours'
                               ELSE d + interval '1 day 3 hours' END AT TIME ZONE 'UTC'
                     FROM date_trunc('day', now() AT TIME ZONE 'UTC') AS d) AS next_0300_utc,
       next_run > now() AS in_the_future,
       next_run <= now() + interval '1 day' AS within_a_day
  FROM workflow.schedules WHERE name = 'nightly';

-- the default params are {}
SELECT workflow.schedule('plain', '15 4 * * *', 'wf') AS plain_id \gset
SELECT command FROM cron.job WHERE jobid = :plain_id;
SELECT name, cron, workflow, params FROM workflow.schedules ORDER BY name;

-- params are quoted: what pg_cron runs gives the job exactly these params,
-- and the view shows them (an apostrophe, a backslash, quotes, non-ASCII)
CREATE TEMP TABLE quoting (name text, params jsonb, cron_job_id bigint);
INSERT INTO quoting (name, params) VALUES
    ('apostrophe', $${"s": "it's"}$$),
    ('backslash', $${"path": "C:\\temp"}$$),
    ('quotes', $${"q": "\"x\"", "u": "é"}$$);
UPDATE quoting SET cron_job_id = workflow.schedule(name, '0 5 * * *', 'wf', params);
SELECT q.name, j.command FROM quoting q JOIN cron.job j ON j.jobid = q.cron_job_id ORDER BY q.name;
SELECT command AS apostrophe_command FROM cron.job WHERE jobname = 'workflow:apostrophe' \gset
:apostrophe_command AS apostrophe_job \gset
SELECT command AS backslash_command FROM cron.job WHERE jobname = 'workflow:backslash' \gset
:backslash_command AS backslash_job \gset
SELECT command AS quotes_command FROM cron.job WHERE jobname = 'workflow:quotes' \gset
:quotes_command AS quotes_job \gset
SELECT q.name, j.params, j.params = q.params AS same
  FROM quoting q
  JOIN (VALUES ('apostrophe', :apostrophe_job), ('backslash', :backslash_job), ('quotes', :quotes_job))
       AS v(name, id) ON v.name = q.name
  JOIN workflow.jobs j ON j.id = v.id
 ORDER BY q.name;
SELECT q.name, s.workflow, s.params, s.params = q.params AS same
  FROM quoting q LEFT JOIN workflow.schedules s ON s.name = q.name ORDER BY q.name;

-- scheduling a name again changes that schedule
SELECT workflow.schedule('nightly', '30 2 * * 0', 'wf', '{"a": 2}') AS nightly_again \gset
SELECT :nightly_again = :nightly_id AS same_cron_job;
SELECT count(*) FROM cron.job WHERE jobname = 'workflow:nightly';
SELECT schedule, command FROM cron.job WHERE jobid = :nightly_id;
SELECT name, cron, workflow, params FROM workflow.schedules WHERE name = 'nightly';
SELECT next_run = workflow._cron_next('30 2 * * 0', now()) AS next_sunday_0230,
       extract(dow FROM next_run AT TIME ZONE 'UTC') AS dow,
       to_char(next_run AT TIME ZONE 'UTC', 'HH24:MI') AS at_utc
  FROM workflow.schedules WHERE name = 'nightly';

-- bad input: nothing is scheduled
SELECT count(*) AS cron_jobs_before FROM cron.job \gset
-- unknown workflow
SELECT workflow.schedule('nope', '0 3 * * *', 'no_such_workflow');
\echo :LAST_ERROR_SQLSTATE
-- bad names
SELECT workflow.schedule('bad name', '0 3 * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('', '0 3 * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('semi;colon', '0 3 * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule(repeat('x', 129), '0 3 * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
-- NULLs
SELECT workflow.schedule(NULL, '0 3 * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', NULL, 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', '0 3 * * *', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', '0 3 * * *', 'wf', NULL);
\echo :LAST_ERROR_SQLSTATE
-- params that are not a JSON object
SELECT workflow.schedule('n', '0 3 * * *', 'wf', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', '0 3 * * *', 'wf', '"text"');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', '0 3 * * *', 'wf', 'null');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', '0 3 * * *', 'wf', '42');
\echo :LAST_ERROR_SQLSTATE
-- a schedule pg_cron does not understand (terse: the error of pg_cron 1.6,
-- built for PostgreSQL 18, has a HINT that Debian's 1.4 for 15 lacks)
\set VERBOSITY terse
SELECT workflow.schedule('n', '61 * * * *', 'wf');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.schedule('n', 'every day', 'wf');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT count(*) = :cron_jobs_before AS nothing_scheduled FROM cron.job;
SELECT count(*) FROM cron.job WHERE jobname = 'workflow:n';

-------------------------------------------------------------------------------
-- Another role: its own schedules, run as itself
-------------------------------------------------------------------------------

-- without USAGE on schema cron: refused (README: grant it to use schedules)
SET ROLE regress_sched_user;
SELECT workflow.schedule('mine', '0 6 * * *', 'wf', '{"who": "user"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM workflow.schedules;
RESET ROLE;

GRANT USAGE ON SCHEMA cron TO regress_sched_user;
SET ROLE regress_sched_user;
SELECT workflow.schedule('mine', '0 6 * * *', 'wf', '{"who": "user"}') AS mine_id \gset
-- it sees only its own schedules
SELECT name, cron, workflow, params, owner FROM workflow.schedules;
-- and cannot remove another role's
SELECT workflow.unschedule('nightly');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT username FROM cron.job WHERE jobid = :mine_id;
-- the superuser sees every schedule
SELECT name, owner = current_user AS mine FROM workflow.schedules ORDER BY name;
-- pg_cron runs the command as that role: the job is the role's
SELECT command AS mine_command FROM cron.job WHERE jobid = :mine_id \gset
SET ROLE regress_sched_user;
:mine_command AS mine_job \gset
RESET ROLE;
SELECT workflow, params, created_by FROM workflow.jobs WHERE id = :mine_job;
SET ROLE regress_sched_user;
SELECT workflow.unschedule('mine');
SELECT count(*) FROM workflow.schedules;
RESET ROLE;

-------------------------------------------------------------------------------
-- unschedule
-------------------------------------------------------------------------------

SELECT workflow.unschedule('nightly');
SELECT count(*) FROM cron.job WHERE jobname = 'workflow:nightly';
SELECT name FROM workflow.schedules ORDER BY name;
-- again: it no longer exists
SELECT workflow.unschedule('nightly');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.unschedule('never_scheduled');
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.unschedule(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT workflow.unschedule('bad name');
\echo :LAST_ERROR_SQLSTATE
-- a pg_cron job that is not a workflow schedule is neither shown nor removed
SELECT cron.schedule('other', '0 7 * * *', 'SELECT 1') AS other_id \gset
SELECT name FROM workflow.schedules ORDER BY name;
SELECT workflow.unschedule('other');
\echo :LAST_ERROR_SQLSTATE
SELECT cron.unschedule('other');
SELECT workflow.unschedule('plain');
SELECT workflow.unschedule(name) FROM quoting ORDER BY name;
SELECT count(*) FROM workflow.schedules;
SELECT count(*) FROM cron.job;

-------------------------------------------------------------------------------
-- workflow._cron_next: the next run after a given time, in UTC
-------------------------------------------------------------------------------

CREATE FUNCTION pg_temp.next_runs(expr text, after timestamptz, n int DEFAULT 1)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := after;
    out text[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        t := workflow._cron_next(expr, t);
        EXIT WHEN t IS NULL;
        out := out || to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD Dy HH24:MI');
    END LOOP;
    RETURN CASE WHEN cardinality(out) = 0 THEN 'NULL' ELSE array_to_string(out, ', ') END;
END
$$;

-- working hours, every 15 minutes, Monday to Friday (2025-01-06 is a Monday)
SELECT pg_temp.next_runs('*/15 9-17 * * 1-5', '2025-01-06 08:59:59+00', 3);
SELECT pg_temp.next_runs('*/15 9-17 * * 1-5', '2025-01-06 09:00:00+00', 2);
SELECT pg_temp.next_runs('*/15 9-17 * * 1-5', '2025-01-06 09:14:30+00');
SELECT pg_temp.next_runs('*/15 9-17 * * 1-5', '2025-01-06 17:44:00+00', 3);
SELECT pg_temp.next_runs('*/15 9-17 * * 1-5', '2025-01-10 17:45:00+00', 2);
SELECT pg_temp.next_runs('*/15 9-17 * * 1-5', '2025-01-11 12:00:00+00');
-- midnight on the first of the month
SELECT pg_temp.next_runs('0 0 1 * *', '2025-01-15 12:00:00+00', 3);
SELECT pg_temp.next_runs('0 0 1 * *', '2025-12-31 23:59:59+00', 2);
SELECT pg_temp.next_runs('0 0 1 * *', '2025-02-01 00:00:00+00');
-- Sundays at 02:30 (0 and 7 are both Sunday)
SELECT pg_temp.next_runs('30 2 * * 0', '2025-01-06 00:00:00+00', 3);
SELECT pg_temp.next_runs('30 2 * * 0', '2025-01-12 02:29:59.999+00');
SELECT pg_temp.next_runs('30 2 * * 0', '2025-01-12 02:30:00+00');
SELECT pg_temp.next_runs('30 2 * * 7', '2025-01-06 00:00:00+00');
-- the leap day
SELECT pg_temp.next_runs('0 12 29 2 *', '2027-06-01 00:00:00+00');
SELECT pg_temp.next_runs('0 12 29 2 *', '2024-01-01 00:00:00+00');
SELECT pg_temp.next_runs('0 12 29 2 *', '2024-02-29 12:00:00+00');
SELECT pg_temp.next_runs('0 12 29 2 *', '2025-03-01 00:00:00+00');
-- lists, ranges with steps, day of month and day of week both restricted
-- (either matches)
SELECT pg_temp.next_runs('5,35 */6 * * *', '2025-01-01 00:00:00+00', 4);
SELECT pg_temp.next_runs('0 8-18/5 * * *', '2025-01-01 09:00:00+00', 3);
SELECT pg_temp.next_runs('0 0 13 * 5', '2025-01-01 00:00:00+00', 4);
-- a day of month starting with * is unrestricted for that rule, as in
-- pg_cron (and Vixie cron): then both must match
SELECT pg_temp.next_runs('0 0 */10 * 1', '2025-01-01 00:00:00+00', 2);
-- 7 in a range of days of the week is Sunday too
SELECT pg_temp.next_runs('0 9 * * 5-7', '2025-01-06 00:00:00+00', 3);
-- whitespace around and between the fields
SELECT pg_temp.next_runs(E'  0\t3   * * *  ', '2025-01-01 00:00:00+00');
-- the time zone of the session does not matter: pg_cron runs in GMT
SET TIME ZONE 'Pacific/Auckland';
SELECT pg_temp.next_runs('0 3 * * *', '2025-01-01 02:00:00+00');
SELECT workflow._cron_next('0 3 * * *', '2025-01-01 02:00:00+00') = '2025-01-01 03:00:00+00' AS same_instant;
RESET TIME ZONE;

-- not understood, or not a five-field expression: NULL
SELECT expr, workflow._cron_next(expr, '2025-01-01 00:00:00+00') AS next_run
  FROM (VALUES ('60 * * * *'), ('* 24 * * *'), ('* * 0 * *'), ('* * 32 * *'), ('* * * 0 *'),
               ('* * * 13 *'), ('* * * * 8'), ('5-1 * * * *'), ('*/0 * * * *'), ('-1 * * * *'),
               ('* * * *'), ('* * * * * *'), ('a b c d e'), ('1,,2 * * * *'), ('@daily'),
               ('@hourly'), ('30 seconds'), ('0 0 $ * *'), (''), ('   ')) AS t(expr);
SELECT workflow._cron_next(NULL, '2025-01-01 00:00:00+00') AS null_expression;
SELECT workflow._cron_next('0 3 * * *', NULL) AS null_time;
-- a day that never comes
SELECT workflow._cron_next('0 0 31 2 *', '2025-01-01 00:00:00+00') AS february_31;
-- numbers too large for a cron field, and ranges that are not cron's: NULL,
-- never an error or a huge series
SELECT workflow._cron_next('99999999999 * * * *', '2025-01-01 00:00:00+00') AS huge_minute;
SELECT workflow._cron_field('*/5', 0, 2147483647) AS huge_range,
       workflow._cron_field('1-2', -5, 10) AS negative_range,
       workflow._cron_field('*/20', 0, 59) AS every_20;

-- a pg_cron job named like a schedule but written by hand, with params that
-- are not JSON, does not break the view for anyone
SELECT cron.schedule('workflow:by-hand', '0 4 * * *',
                     $$SELECT workflow.create_job('wf', 'not json'::jsonb)$$) > 0 AS scheduled;
SELECT name, workflow, params FROM workflow.schedules WHERE name = 'by-hand';
SELECT cron.unschedule('workflow:by-hand');

-------------------------------------------------------------------------------
-- Clean up
-------------------------------------------------------------------------------

DROP EXTENSION pg_cron;
SELECT count(*) FROM workflow.schedules;
SELECT workflow.drop_workflow('wf', force => true);
DROP OWNED BY regress_sched_user;
DROP ROLE regress_sched_user;
