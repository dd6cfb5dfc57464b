# 080_retention.pl: the sweeper prunes succeeded jobs older than
# workflow.retention and failed or canceled ones older than
# workflow.failed_retention, with their task runs and info, in batches of
# at most 500 that skip locked rows; live and recent jobs are never pruned;
# a retention of 0 keeps everything (README "Operations", retention).
#
# The server starts with workflow.retention = '2s',
# workflow.failed_retention = '2s' and
# workflow.activity_interval = '100ms' (a sweeper pass every 100 ms).  A
# statement-level AFTER DELETE trigger on workflow.jobs (added by the test)
# logs every DELETE: how many jobs, whether all were finished, the youngest
# one's age, and the backend type.
#
# (1) workflow.retention = 0 and workflow.failed_retention = 0 (ALTER
#     SYSTEM, reload): a waiting job (a
#     {"wait": "signal"} task) and a queued job due tomorrow are created,
#     then 1200 one-task jobs (more than two sweep batches; each task adds
#     an info entry), 10 failing and 5 canceled ones.  Once all are finished,
#     older than 3 s, and the sweeper has completed 5 more passes (its
#     heartbeat, written in the transaction of each pass, advanced 5 times),
#     they are all still there with their task runs and info.
# (2) Back to 2 s (ALTER SYSTEM RESET, reload) while another session holds a
#     FOR UPDATE lock on one of them: all others are pruned at once in
#     batches of 500, 500 and 214, skipping the locked one without waiting;
#     once the lock is released it goes too.  Every delete was the
#     sweeper's, removed only finished jobs finished more than 2 s before;
#     jobs, task_runs and job_info hold none of them.  50 new jobs are
#     pruned once they are 2 s old, not before.  The live jobs survive.
# (3) workflow.failed_retention = 6s, workflow.retention still 2s: a
#     succeeded, a failed and a canceled job that finished together.  The
#     succeeded one is pruned; the failed and canceled ones are still there
#     when they are 3 s old and after two more passes, and are pruned once
#     older than 6 s, not before.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('retention',
	settings => {
		'workflow.stale_after' => undef,
		'workflow.retention' => '2s',
		'workflow.failed_retention' => '2s'
	});

is($node->q('SHOW workflow.retention'), '2s', 'workflow.retention is 2s');
is($node->q('SHOW workflow.failed_retention'), '2s', 'workflow.failed_retention is 2s');
ok( $node->poll_query_until('postgres', "SELECT count(*) = 1 FROM workflow.runners WHERE id = 'sweeper'"),
	'the sweeper registered itself');
ok($node->sweeper_passes(2), 'the sweeper heartbeats');

$node->create_workflow(q{{"name": "ret_one", "chain": [
  {"name": "t", "sql": "select workflow.add_info('{\"note\": \"ret\"}'::jsonb); select 1"}]}});
$node->create_workflow(q{{"name": "ret_fail", "chain": [{"name": "t", "sql": "select 1/0"}]}});
$node->create_workflow(q{{"name": "ret_wait", "chain": [{"name": "w", "wait": "signal"}]}});

# every DELETE on workflow.jobs, with what it deleted
$node->q(q{
CREATE TABLE public.prune_log (logged_at timestamptz DEFAULT clock_timestamp(), n bigint,
                               min_age interval, all_finished boolean, backend_type text);
CREATE FUNCTION public.log_prune() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.prune_log (n, min_age, all_finished, backend_type)
    SELECT count(*), min(now() - o.finished_at),
           bool_and(o.execution IN ('succeeded', 'failed', 'canceled')),
           (SELECT a.backend_type FROM pg_stat_activity a WHERE a.pid = pg_backend_pid())
      FROM old_rows o
    HAVING count(*) > 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER log_prune AFTER DELETE ON workflow.jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.log_prune();
});

###############################################################################
# (1) workflow.retention = 0 keeps everything
###############################################################################

$node->q(q{ALTER SYSTEM SET workflow.retention = 0});
$node->q(q{ALTER SYSTEM SET workflow.failed_retention = 0});
$node->q('SELECT pg_reload_conf()');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT current_setting('workflow.retention') = '0' AND current_setting('workflow.failed_retention') = '0'}),
	'workflow.retention = 0 and workflow.failed_retention = 0 after a reload');
# the sweeper reloads at the start of a pass: two passes make sure it did
ok($node->sweeper_passes(2), 'the sweeper completed two passes since');

my $waiting = $node->q("SELECT workflow.create_job('ret_wait')");
my $later = $node->q("SELECT workflow.create_job('ret_one', run_at => now() + interval '1 day')");
ok( $node->poll_query_until('postgres', "SELECT execution = 'waiting' FROM workflow.jobs WHERE id = $waiting"),
	'a live job is waiting, another is queued for tomorrow');

$node->q(q{
CREATE TABLE public.batch AS
SELECT workflow.create_job('ret_one', jsonb_build_object('i', i)) AS id FROM generate_series(1, 1200) i;
INSERT INTO public.batch SELECT workflow.create_job('ret_fail') FROM generate_series(1, 10);
});
my @cancel = split /\n/, $node->q(
	q{SELECT workflow.create_job('ret_one', run_at => now() + interval '1 hour') FROM generate_series(1, 5)});
$node->q("INSERT INTO public.batch VALUES (" . join('), (', @cancel) . ")");
is($node->q('SELECT string_agg(DISTINCT c::text, \',\') FROM (SELECT workflow.cancel_job(id) AS c FROM unnest(ARRAY[' . join(',', @cancel) . ']) id) s'),
	'true', 'five jobs canceled');
is($node->q('SELECT count(*) FROM public.batch'), '1215', '1215 jobs to finish');

ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 0 FROM workflow.jobs j JOIN public.batch b USING (id)
           WHERE j.execution NOT IN ('succeeded', 'failed', 'canceled')}),
	'all 1215 jobs finished');
is( $node->q(
		q{SELECT string_agg(execution || ' ' || n, ', ' ORDER BY execution::text) FROM
           (SELECT j.execution, count(*) n FROM workflow.jobs j JOIN public.batch b USING (id) GROUP BY 1) s}),
	'canceled 5, failed 10, succeeded 1200',
	'1200 succeeded, 10 failed, 5 canceled');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT max(j.finished_at) < now() - interval '3 s' FROM workflow.jobs j JOIN public.batch b USING (id)}),
	'all of them finished more than 3 s ago');
ok($node->sweeper_passes(5), 'the sweeper completed 5 more passes');
is($node->q('SELECT count(*) FROM workflow.jobs j JOIN public.batch b USING (id)'), '1215',
	'retention 0: all 1215 jobs are kept');
is($node->q('SELECT count(*) FROM workflow.task_runs r JOIN public.batch b ON b.id = r.job_id'),
	'1210', 'retention 0: with their task runs');
is($node->q('SELECT count(*) FROM workflow.job_info i JOIN public.batch b ON b.id = i.job_id'),
	'1200', 'retention 0: and their info');
is($node->q('SELECT count(*) FROM public.prune_log'), '0', 'retention 0: nothing was deleted at all');

###############################################################################
# (2) back to 2 s: everything old is pruned, in batches
###############################################################################

# another session holds a lock on one of them: pruning skips it, never
# waits for it
my $locked = $node->q('SELECT min(id) FROM public.batch');
my $session = $node->background_psql('postgres');
$session->query_safe("BEGIN; SELECT id FROM workflow.jobs WHERE id = $locked FOR UPDATE");

my $deleted_before = $node->q(
	q{SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'workflow.jobs'::regclass});
$node->q(q{ALTER SYSTEM RESET workflow.retention});
$node->q(q{ALTER SYSTEM RESET workflow.failed_retention});
$node->q('SELECT pg_reload_conf()');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 1 FROM workflow.jobs j JOIN public.batch b USING (id)}),
	'retention 2s: all but the locked job were pruned');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE id = $locked"), '1', 'the locked job was skipped');
is($node->q("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow sweeper' AND wait_event_type = 'Lock'"),
	'0', 'the sweeper does not wait for the lock');
is($node->q("SELECT string_agg(n::text, ',' ORDER BY logged_at) FROM public.prune_log"),
	'500,500,214', 'in batches of at most 500 (all were prunable at once)');
$session->query_safe('COMMIT');
$session->quit;
ok( $node->poll_query_until(
		'postgres',
		q{SELECT (SELECT count(*) FROM workflow.jobs j JOIN public.batch b USING (id))
               + (SELECT count(*) FROM workflow.task_runs r JOIN public.batch b ON b.id = r.job_id)
               + (SELECT count(*) FROM workflow.job_info i JOIN public.batch b ON b.id = i.job_id) = 0}),
	'once the lock is released, all 1215 are pruned from workflow.jobs, task_runs and job_info');
is($node->q('SELECT count(*) FROM workflow.task_runs WHERE job_id NOT IN (SELECT id FROM workflow.jobs)'),
	'0', 'no task run is left without its job');
is($node->q('SELECT count(*) FROM workflow.job_info WHERE job_id NOT IN (SELECT id FROM workflow.jobs)'),
	'0', 'no info entry is left without its job');

is($node->q('SELECT sum(n) FROM public.prune_log'), '1215', 'the deletes removed exactly those 1215 jobs');
is($node->q("SELECT string_agg(DISTINCT backend_type, ',') FROM public.prune_log"),
	'workflow sweeper', 'every delete was the sweeper\'s');
is($node->q("SELECT string_agg(n::text, ',' ORDER BY logged_at) FROM public.prune_log"),
	'500,500,214,1', 'the locked job in a batch of its own');
is($node->q('SELECT bool_and(all_finished) FROM public.prune_log'), 't', 'only finished jobs were pruned');
is($node->q("SELECT bool_and(min_age > interval '2 s') FROM public.prune_log"),
	't', 'only jobs finished more than workflow.retention ago were pruned');
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT n_tup_del - $deleted_before >= 1215 FROM pg_stat_user_tables WHERE relid = 'workflow.jobs'::regclass}),
	'pg_stat_user_tables counts the deleted rows');

is($node->q("SELECT execution FROM workflow.jobs WHERE id = $waiting"), 'waiting', 'the waiting job was not pruned');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $later"), 'queued', 'the queued job was not pruned');

# recent jobs: pruned only once they are old enough
$node->q(q{
TRUNCATE public.prune_log;
CREATE TABLE public.batch3 AS
SELECT workflow.create_job('ret_one', jsonb_build_object('k', i)) AS id FROM generate_series(1, 50) i;
});
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 0 FROM workflow.jobs j JOIN public.batch3 b USING (id)}),
	'50 new jobs ran and were pruned');
is($node->q('SELECT sum(n) FROM public.prune_log'), '50', 'by the sweeper');
is($node->q("SELECT bool_and(min_age > interval '2 s') FROM public.prune_log"),
	't', 'none of them before it was 2 s old');

# the live jobs stay through more passes
ok($node->sweeper_passes(3), 'three more sweeper passes');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE id IN ($waiting, $later)"), '2', 'the live jobs are still there');

###############################################################################
# (3) failed and canceled jobs are kept for workflow.failed_retention
###############################################################################

$node->q(q{ALTER SYSTEM SET workflow.failed_retention = '6s'});
$node->q('SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', q{SELECT current_setting('workflow.failed_retention') = '6s'}),
	'workflow.failed_retention = 6s after a reload');
ok($node->sweeper_passes(2), 'the sweeper completed two passes since');
$node->q('TRUNCATE public.prune_log');

my $canceled = $node->q(q{SELECT workflow.create_job('ret_one', run_at => now() + interval '1 hour')});
my $succeeded = $node->q(q{SELECT workflow.create_job('ret_one')});
my $failed = $node->q(q{SELECT workflow.create_job('ret_fail')});
$node->q("SELECT workflow.cancel_job($canceled)");
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT string_agg(execution::text, ',' ORDER BY id) = 'canceled,succeeded,failed'
             FROM workflow.jobs WHERE id IN ($canceled, $succeeded, $failed)}),
	'a canceled, a succeeded and a failed job');
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT max(finished_at) - min(finished_at) < interval '1 s'
             FROM workflow.jobs WHERE id IN ($canceled, $succeeded, $failed)}),
	'they finished within a second of each other');
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT count(*) = 0 FROM workflow.jobs WHERE id = $succeeded}),
	'the succeeded job was pruned after workflow.retention');
# no row (pruned) never satisfies the condition: the poll then fails
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT bool_and(now() - finished_at > interval '3 s') AND count(*) = 2
             FROM workflow.jobs WHERE id IN ($canceled, $failed)}),
	'the failed and the canceled job are still there when 3 s old');
ok($node->sweeper_passes(2), 'two more sweeper passes');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE id IN ($canceled, $failed)"),
	'2', 'the failed and the canceled job outlive the succeeded one');
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT count(*) = 0 FROM workflow.jobs WHERE id IN ($canceled, $failed)}),
	'the failed and the canceled job are pruned after workflow.failed_retention');
is($node->q(q{SELECT sum(n) FROM public.prune_log}), '3', 'three jobs were pruned');
is( $node->q(
		q{SELECT format('%s %s', n, min_age < interval '6 s') FROM public.prune_log
           ORDER BY logged_at LIMIT 1}),
	'1 t', 'the succeeded job first, before it was 6 s old');
is( $node->q(
		q{SELECT format('%s %s', sum(n), bool_and(min_age > interval '6 s')) FROM public.prune_log
           WHERE logged_at > (SELECT min(logged_at) FROM public.prune_log)}),
	'2 t', 'the failed and the canceled job only once older than 6 s');

my @bad = $node->log_lines(qr/\b(PANIC):|server process .* terminated|terminated by signal|could not sweep/);
is_deeply(\@bad, [], 'server log: no PANIC, crash or failed sweep');

$node->stop;

done_testing();
