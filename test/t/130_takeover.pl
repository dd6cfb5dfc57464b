# 130_takeover.pl: an idle runner takes over the jobs a busy runner claimed
# in its batch but has not started, so that one slow task does not hold
# back the quick jobs claimed with it (src/runner.c, take_over_jobs).
#
# A commit of 6 jobs wakes one runner (one per workflow.batch_size jobs),
# which claims them all; the first is slow (pg_sleep).  The other runner,
# idle, at its next poll (workflow.run_interval = 1s, so that it does not
# claim jobs of the batch itself), sees in shared memory that a batch has
# waited more than 100 ms and takes the 5 quick jobs over:
#
# (1) the quick jobs succeed while the slow one still runs, and a runner
#     other than the slow job's ran them;
# (2) the slow job succeeds too, run once, by its runner: nothing was taken
#     from it while its task ran;
# (3) with nothing slow, nothing is taken over: every job of a batch is run
#     by the runner that claimed it (the claim's lease is the one recorded).

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('takeover',
	settings => { 'workflow.run_interval' => '1s', 'workflow.stale_after' => undef });
$node->safe_psql('postgres', q{
SELECT workflow.create_workflow('{"name": "slow", "chain": [{"name": "a", "sql": "select pg_sleep(8)"}]}');
SELECT workflow.create_workflow('{"name": "quick", "chain": [{"name": "a", "sql": "select 1"}]}');
});

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND wait_event_type = 'Extension'",
		'2'),
	'both runners are up and asleep');

###############################################################################
# (1), (2) a slow job and 5 quick ones in one commit
###############################################################################

my $slow = $node->q(q{
BEGIN;
SELECT workflow.create_job('slow');
SELECT workflow.create_job('quick', jsonb_build_object('i', i)) FROM generate_series(1, 5) i;
COMMIT;
});
($slow) = split /\n/, $slow;

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM workflow.jobs WHERE workflow = 'quick' AND execution = 'succeeded'",
		'5'),
	'(1) the 5 quick jobs succeeded');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $slow"),
	'running', '(1) ... while the slow job still runs');
is( $node->q(
		"SELECT count(*) FROM workflow.task_runs r
		  WHERE r.job_id IN (SELECT id FROM workflow.jobs WHERE workflow = 'quick')
		    AND r.runner_id IS DISTINCT FROM (SELECT runner_id FROM workflow.jobs WHERE id = $slow)"),
	'5',
	'(1) another runner than the slow job\'s ran each of them');
# a takeover re-claims: the quick jobs were claimed again, at least 100 ms
# after the batch (a runner that claimed them itself would have done so
# with the slow one, within a millisecond)
is( $node->q(
		"SELECT count(*) FROM workflow.jobs q, workflow.jobs s
		  WHERE q.workflow = 'quick' AND s.id = $slow
		    AND q.claimed_at >= s.claimed_at + interval '100 ms'"),
	'5',
	'(1) ... taken over: claimed again more than 100 ms after the slow job\'s batch');

ok( $node->poll_query_until(
		'postgres', "SELECT execution FROM workflow.jobs WHERE id = $slow", 'succeeded'),
	'(2) the slow job succeeded');
is( $node->q(
		"SELECT count(*) || ' ' || bool_and(r.runner_id = j.runner_id)
		   FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id WHERE j.id = $slow"),
	'1 true',
	'(2) ... once, by the runner that claimed it');

###############################################################################
# (3) quick jobs only: no takeover
###############################################################################

$node->q("DELETE FROM workflow.task_runs; DELETE FROM workflow.jobs;");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND wait_event_type = 'Extension'",
		'2'),
	'(3) both runners asleep again');
$node->q("SELECT count(workflow.create_job('quick')) FROM generate_series(1, 40)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM workflow.jobs WHERE workflow = 'quick' AND execution = 'succeeded'",
		'40'),
	'(3) the 40 quick jobs succeeded');
is( $node->q(
		"SELECT count(DISTINCT r.lease) || ' ' || count(*)
		   FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
		  WHERE j.workflow = 'quick' AND r.runner_id = j.runner_id"),
	'40 40',
	'(3) each run by the runner that claimed it, under its claim\'s lease');

$node->stop;
done_testing();
