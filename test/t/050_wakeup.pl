# 050_wakeup.pl: a committed create_job wakes an idle runner at once;
# workflow.run_interval is only the fallback (README "How jobs run").  And
# workflow.enabled = off pauses the runners (reload), on resumes them.
#
# (1) With workflow.run_interval = '5s', 20 jobs one at a time, each created
#     while every runner sleeps: the delay from the job's created_at to its
#     started_at (claim) and to its task's start is well under run_interval
#     (< 1s each; without the wake-up the average would be 2.5s).
# (2) workflow.enabled = off (ALTER SYSTEM + reload): a new job stays queued
#     while the runners poll every 50ms (observed in a bounded loop of
#     queries, about 1.5s); enabled = on (reload) runs it.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('wakeup_runners');
$node->safe_psql('postgres',
	q{SELECT workflow.create_workflow('{"name": "quick", "chain": [{"name": "a", "sql": "select clock_timestamp()"}]}')}
);

# the fallback poll becomes 5s, set in the configuration file
$node->append_conf('postgresql.conf', "workflow.run_interval = '5s'\n");
$node->restart;
is($node->safe_psql('postgres', 'SHOW workflow.run_interval'), '5s', 'run_interval is 5s');

# every runner is asleep in its wait for work
sub runners_asleep
{
	return $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND wait_event_type = 'Extension'",
		'2');
}

###############################################################################
# (1) wake-up latency
###############################################################################

ok(runners_asleep(), 'both runners are up and asleep');

my (@claim_ms, @task_ms);
my $all_ok = 1;
for my $i (1 .. 20)
{
	$all_ok &&= runners_asleep();
	my $id = $node->q("SELECT workflow.create_job('quick', '{\"i\": $i}')");
	$node->poll_query_until('postgres',
		"SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $id")
	  or diag("job $id did not finish");
	my ($state, $claim, $task) = split /\|/, $node->q(
		"SELECT j.execution,
		        round(extract(epoch FROM j.started_at - j.created_at) * 1000, 1),
		        round(extract(epoch FROM r.started_at - j.created_at) * 1000, 1)
		   FROM workflow.jobs j JOIN workflow.task_runs r ON r.job_id = j.id
		  WHERE j.id = $id");
	$all_ok &&= ($state eq 'succeeded');
	push @claim_ms, $claim;
	push @task_ms, $task;
}
ok($all_ok, '20 jobs, each created while the runners slept, all succeeded');

my @sorted_claim = sort { $a <=> $b } @claim_ms;
my @sorted_task = sort { $a <=> $b } @task_ms;
note("wake-up latency, created_at -> jobs.started_at (ms): @claim_ms");
note("wake-up latency, created_at -> task_runs.started_at (ms): @task_ms");
note(sprintf('median %s ms, max %s ms (claim); median %s ms, max %s ms (task start)',
	$sorted_claim[10], $sorted_claim[-1], $sorted_task[10], $sorted_task[-1]));
cmp_ok($sorted_claim[-1], '<', 1000, "every job was claimed within 1s of its creation (max $sorted_claim[-1] ms; run_interval 5s)");
cmp_ok($sorted_task[-1], '<', 1000, "every task started within 1s of the job's creation (max $sorted_task[-1] ms)");
cmp_ok($sorted_claim[10], '<', 250, "the median claim delay is small ($sorted_claim[10] ms)");

###############################################################################
# (2) workflow.enabled = off pauses, on resumes
###############################################################################

# the runners poll every 50ms while paused, so that they have many chances
# to take the job in the window below
$node->safe_psql('postgres', "ALTER SYSTEM SET workflow.enabled = off");
$node->safe_psql('postgres', "ALTER SYSTEM SET workflow.run_interval = '50ms'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $node->poll_query_until(
		'postgres', "SELECT current_setting('workflow.enabled') || current_setting('workflow.run_interval')",
		'off50ms'),
	'enabled = off and run_interval = 50ms after the reload');
ok(runners_asleep(), 'paused: the runners are there and idle');

my $paused = $node->q("SELECT workflow.create_job('quick', '{\"paused\": true}')");

# a bounded loop of queries, at least 1.5s and 15 looks: the job stays queued
# and unclaimed while both runners are alive
my $t0 = time();
my ($looks, $bad) = (0, '');
while ($looks < 15 || time() - $t0 < 1.5)
{
	my $r = $node->q(
		"SELECT j.execution || '/' || coalesce(j.runner_id, '-') || '/' || (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner')
		   FROM workflow.jobs j WHERE j.id = $paused");
	$bad = $r if $r ne 'queued/-/2' && $bad eq '';
	$looks++;
	last if $looks > 1000;
}
is($bad, '', sprintf('paused: the job stayed queued for %.2fs (%d looks) with both runners alive', time() - $t0, $looks));
is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id = $paused"), '0', 'paused: nothing ran');

$node->safe_psql('postgres', "ALTER SYSTEM SET workflow.enabled = on");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$t0 = time();
ok( $node->poll_query_until(
		'postgres', "SELECT execution FROM workflow.jobs WHERE id = $paused", 'succeeded'),
	'enabled = on: the paused job ran and succeeded');
my $resumed = time() - $t0;
cmp_ok($resumed, '<', 10, sprintf('enabled = on: it ran promptly (%.2fs)', $resumed));

# (at the restart, the sweeper is stopped with a FATAL "terminating
# background worker", and a connection of this test still exiting may be
# terminated: those are expected)
my @bad = $node->log_lines(
	qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/,
	except => qr/terminating background worker "workflow sweeper" due to administrator command|terminating connection due to administrator command/);
is_deeply(\@bad, [], 'server log: no PANIC, FATAL or crashed backend');

$node->stop;

done_testing();
