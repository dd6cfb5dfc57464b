# 150_sweeper_faults.pl: nothing a role does to its own jobs stops the
# sweeper, and a canceled job is interrupted only by a cancel that commits
# (src/wakeup.c, src/sweeper.c, workflow._sweep).
#
# (1) 70 external tasks polled by a worker and past their job timeout (more
#     than the 64 interrupts a transaction could once record, which made
#     every pass fail) are all timed out; in the same run, set up only once
#     their deadline has passed, a wait timer ends and its job succeeds, and
#     a finished job older than workflow.retention is pruned.
# (2) An item that fails does not stop the others: a trigger injects a fault
#     into the task run of one of three elapsed timers; the other two end,
#     the failure is logged once with the job id (WARNING) and not again at
#     the following passes; once the fault is gone the job is handled at a
#     later pass.
# (3) Open transactions do not stall the sweeper: while alice holds one of
#     her waiting jobs in an idle transaction (add_info and cancel_job),
#     another session holds the row of an in-server runner (its heartbeat)
#     and another the target lock of a third job whose timer ends, the
#     sweeper keeps completing passes and ends the other timers; the held
#     jobs are handled at a later pass once the sessions end.
# (4) A rolled-back cancel_job (ROLLBACK TO SAVEPOINT, a failed exception
#     block) does not interrupt the running SQL task: it finishes and its
#     job succeeds.  One of a released savepoint does: the job is canceled
#     and its runner leaves pg_sleep at once.
# (5) PREPARE TRANSACTION after cancel_job of a running job is refused with
#     SQLSTATE 0A000 and changes nothing; a cancel of a queued job can be
#     prepared and committed.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('sweeper_faults',
	settings => {
		max_prepared_transactions => '5',
		'workflow.stale_after' => undef,
		'workflow.retention' => '1h',
		'workflow.task_lease' => '1h',
	});
# alice owns the jobs ($node->q_as('alice', ...)), wk is a worker
$node->create_role('alice', 'workflow_user');
$node->create_role('wk', 'workflow_worker');

# wait until a job is in a state; true when it got there
sub wait_for_state
{
	my ($id, $state) = @_;
	return $node->poll_query_until('postgres',
		"SELECT execution = '$state' FROM workflow.jobs WHERE id = $id");
}

# how often the server log says $re
sub log_count
{
	my ($re) = @_;
	my $log = slurp_file($node->logfile);
	my $n = () = $log =~ /$re/g;
	return $n;
}

ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type IN ('workflow runner', 'workflow sweeper')"),
	'the runners and the sweeper are up');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM workflow.runners WHERE id = 'sweeper'"),
	'the sweeper registered itself');

$node->create_workflow(q{{"name": "ext", "timeout": "2s", "chain": [
  {"name": "pay", "task_type": "pay"}]}}, as => 'alice');
$node->create_workflow(q{{"name": "timer", "chain": [
  {"name": "hold", "wait": "1s"},
  {"name": "after", "sql": "select 'after'"}]}}, as => 'alice');
$node->create_workflow(q{{"name": "timer_only", "chain": [
  {"name": "hold", "wait": "1s"}]}}, as => 'alice');
$node->create_workflow(q{{"name": "quick", "chain": [
  {"name": "q", "sql": "select 1"}]}}, as => 'alice');
$node->create_workflow(q{{"name": "sleepy", "timeout": "30s", "chain": [
  {"name": "nap", "sql": "select pg_sleep(3)"}]}}, as => 'alice');
$node->create_workflow(q{{"name": "sleepy_long", "timeout": "120s", "chain": [
  {"name": "nap", "sql": "select pg_sleep(60)"}]}}, as => 'alice');

###############################################################################
# (1) 70 timed-out external tasks, a timer and retention in the same run
###############################################################################

my $old = $node->q_as('alice', "SELECT workflow.create_job('quick')");
is($node->wait_state($old), 'succeeded', '(1) a quick job succeeded (to be pruned later)');

$node->q_as('alice', "SELECT count(workflow.create_job('ext', jsonb_build_object('n', g))) FROM generate_series(1, 70) g");
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM workflow.poll_tasks('pay', 'wk-1', 100, '0')",
		extra_params => [ '-U', 'wk' ]),
	'70',
	'(1) the worker polled 70 external tasks');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE workflow = 'ext' AND execution = 'running'"),
	'70', '(1) 70 external tasks are running');

# from now on, every pass has 70 timed-out external tasks to handle
ok( $node->poll_query_until('postgres',
		"SELECT bool_and(execution <> 'running' OR deadline < now()) FROM workflow.jobs WHERE workflow = 'ext'"),
	'(1) the job timeout of the 70 tasks has passed');
my $timer = $node->q_as('alice', "SELECT workflow.create_job('timer')");
$node->q("UPDATE workflow.jobs SET finished_at = now() - interval '2 hours' WHERE id = $old");

ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 70 FROM workflow.jobs WHERE workflow = 'ext' AND execution = 'failed' AND error->>'message' = 'job timed out'"),
	'(1) all 70 external tasks were timed out');
is($node->wait_state($timer), 'succeeded', '(1) the wait timer ended in the same run and its job succeeded');
is($node->runs($timer), 'hold:succeeded after:succeeded', '(1) the timer job ran both tasks');
ok( $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT 1 FROM workflow.jobs WHERE id = $old) AND NOT EXISTS (SELECT 1 FROM workflow.task_runs WHERE job_id = $old)"),
	'(1) the job older than the retention was pruned in the same run');
is(log_count(qr/cannot interrupt more than/), 0, '(1) no pass failed on the number of interrupts');

###############################################################################
# (2) one item's fault does not stop the others, nor repeats at every pass
###############################################################################

my @t = map { $node->q_as('alice', "SELECT workflow.create_job('timer', '{\"n\": $_}')") } (1 .. 3);
my $bad = $t[1];
$node->q( qq{
CREATE FUNCTION public.fault() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.job_id = $bad AND NEW.task = 'hold' THEN
        RAISE EXCEPTION 'injected fault' USING ERRCODE = 'data_exception';
    END IF;
    RETURN NEW;
END
\$\$;
CREATE TRIGGER fault BEFORE INSERT ON workflow.task_runs
    FOR EACH ROW EXECUTE FUNCTION public.fault();
});
is($node->wait_state($t[0]), 'succeeded', '(2) the first timer job succeeded');
is($node->wait_state($t[2]), 'succeeded', '(2) the third timer job succeeded');
ok($node->wait_for_log(qr/WARNING:  workflow sweeper could not end the timer of job $bad\b/),
	'(2) the failure was logged as a WARNING with the job id');
ok($node->sweeper_passes(10), '(2) the sweeper completed 10 more passes');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $bad"), 'waiting', '(2) the faulty job is still waiting');
is(log_count(qr/could not end the timer of job $bad\b/),
	1, '(2) the failure was not repeated at every pass');
$node->q('DROP TRIGGER fault ON workflow.task_runs; DROP FUNCTION public.fault()');
is($node->wait_state($bad), 'succeeded', '(2) without the fault the job is handled at a later pass');

###############################################################################
# (3) open transactions hold jobs, a runner row and a target: no stall
###############################################################################

my $held = $node->q_as('alice', "SELECT workflow.create_job('timer', '{\"held\": true}')");
my $free = $node->q_as('alice', "SELECT workflow.create_job('timer', '{\"free\": true}')");
my $tgt = $node->q_as('alice', "SELECT workflow.create_job('timer_only', '{}', target => 'tx')");
ok(wait_for_state($held, 'waiting') && wait_for_state($free, 'waiting') && wait_for_state($tgt, 'waiting'),
	'(3) three timer jobs are waiting');

# alice holds one of her jobs in an idle transaction
my $alice = $node->background_psql('postgres', extra_params => [ '-U', 'alice' ]);
$alice->query_safe("BEGIN");
$alice->query_safe("SELECT workflow.add_info($held, '{\"note\": 1}')");
is($alice->query_safe("SELECT workflow.cancel_job($held)"), 't', '(3) alice canceled a job in an open transaction');
# another session holds the row of an in-server runner, another a target
my $runner_row = $node->background_psql('postgres');
$runner_row->query_safe("BEGIN");
is( $runner_row->query_safe(
		"SELECT count(*) FROM (SELECT id FROM workflow.runners WHERE kind = 'runner' FOR UPDATE) s"),
	'2',
	'(3) an open transaction holds the rows of the in-server runners');
my $target_row = $node->background_psql('postgres');
$target_row->query_safe("BEGIN");
is( $target_row->query_safe(
		"SELECT count(*) FROM (SELECT target FROM workflow.target_locks WHERE target = 'tx' FOR UPDATE) s"),
	'1',
	'(3) an open transaction holds the target of a waiting job');

is($node->wait_state($free), 'succeeded', '(3) the timer of the free job ended meanwhile');
ok($node->sweeper_passes(5), '(3) the sweeper keeps completing passes');
is( $node->q("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow sweeper' AND wait_event_type = 'Lock'"),
	'0', '(3) the sweeper is not waiting for a lock');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $held"), 'waiting', '(3) the held job is left for later');
ok($node->wait_for_log(qr/WARNING:  workflow sweeper could not end the timer of job $tgt\b/),
	'(3) ending the timer of the job whose target is held gave up (lock_timeout), with a WARNING');

$alice->query_safe("ROLLBACK");
$alice->quit;
$runner_row->query_safe("ROLLBACK");
$runner_row->quit;
$target_row->query_safe("ROLLBACK");
$target_row->quit;
is($node->wait_state($held), 'succeeded', '(3) the held job is handled at a later pass');
is($node->wait_state($tgt), 'succeeded', '(3) the job whose target was held is handled at a later pass');
is($node->q("SELECT count(*) FROM workflow.target_locks WHERE target = 'tx'"), '0', '(3) its target was released');
ok( $node->poll_query_until('postgres',
		"SELECT bool_and(active_at > now() - interval '2 s') FROM workflow.runners WHERE kind IN ('runner', 'sweeper')"),
	'(3) the heartbeats of every in-server worker are written again');

###############################################################################
# (4) a rolled-back cancel_job does not interrupt the task; a released one does
###############################################################################

my $j1 = $node->q_as('alice', "SELECT workflow.create_job('sleepy')");
my $pid1 = $node->sleeping_runner($j1);
ok($pid1, "(4) a runner ($pid1) is inside the task of job $j1");
$node->q_as('alice', qq{
BEGIN;
SAVEPOINT s;
SELECT workflow.cancel_job($j1);
ROLLBACK TO SAVEPOINT s;
DO \$\$
BEGIN
    PERFORM workflow.cancel_job($j1);
    RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN
    NULL;
END
\$\$;
COMMIT;
});
is($node->wait_state($j1), 'succeeded', '(4) after rolled-back cancels the task finished and the job succeeded');
is($node->runs($j1), 'nap:succeeded', '(4) its one attempt succeeded');

my $j2 = $node->q_as('alice', "SELECT workflow.create_job('sleepy_long')");
my $pid2 = $node->sleeping_runner($j2);
ok($pid2, "(4) a runner ($pid2) is inside the task of job $j2");
my $t0 = time();
$node->q_as('alice', qq{
BEGIN;
SAVEPOINT s;
SELECT workflow.cancel_job($j2);
RELEASE SAVEPOINT s;
COMMIT;
});
ok( $node->poll_query_until('postgres',
		"SELECT wait_event IS DISTINCT FROM 'PgSleep' FROM pg_stat_activity WHERE pid = $pid2"),
	'(4) after the committed cancel the runner left pg_sleep');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 20, sprintf('(4) at once (%.2fs), not after the 60s sleep', $elapsed));
is($node->wait_state($j2), 'canceled', '(4) the job is canceled');

###############################################################################
# (5) PREPARE TRANSACTION after cancel_job of a running job
###############################################################################

my $j3 = $node->q_as('alice', "SELECT workflow.create_job('sleepy_long')");
my $pid3 = $node->sleeping_runner($j3);
ok($pid3, "(5) a runner ($pid3) is inside the task of job $j3");
is( $node->sqlstate_of("BEGIN; SELECT workflow.cancel_job($j3); PREPARE TRANSACTION 'p_cancel';", as => 'alice'),
	'0A000', '(5) PREPARE TRANSACTION after canceling a running job is refused with 0A000');
my ($stdout, $stderr) = ('', '');
$node->psql('postgres', "BEGIN; SELECT workflow.cancel_job($j3); PREPARE TRANSACTION 'p_cancel';",
	stdout => \$stdout, stderr => \$stderr, extra_params => [ '-U', 'alice' ]);
like($stderr, qr/cannot PREPARE a transaction that canceled a running job/, '(5) with the error message');
is($node->q("SELECT count(*) FROM pg_prepared_xacts"), '0', '(5) nothing was prepared');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $j3"), 'running', '(5) the job is still running');
is($node->q("SELECT wait_event FROM pg_stat_activity WHERE pid = $pid3"), 'PgSleep', '(5) its task was not interrupted');

my $queued = $node->q_as('alice', "SELECT workflow.create_job('quick', run_at => now() + interval '1 day')");
is( $node->sqlstate_of("BEGIN; SELECT workflow.cancel_job($queued); PREPARE TRANSACTION 'p_queued';", as => 'alice'),
	"ok: t", '(5) the cancel of a queued job can be prepared');
$node->q_as('alice', "COMMIT PREPARED 'p_queued'");
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $queued"), 'canceled', '(5) and committed');

$node->q_as('alice', "SELECT workflow.cancel_job($j3)");
is($node->wait_state($j3), 'canceled', '(5) a committed cancel ends the job');

$node->q("SELECT 1");
$node->stop;
done_testing();
