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

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('sweeper_faults');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'workflow'
max_worker_processes = 16
max_prepared_transactions = 5
workflow.database = 'postgres'
workflow.runners = 2
workflow.run_interval = '50ms'
workflow.activity_interval = '100ms'
workflow.retention = '1h'
workflow.task_lease = '1h'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION workflow');
$node->safe_psql(
	'postgres', q{
CREATE ROLE alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO alice;
CREATE ROLE wk LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_worker TO wk;
});

# as the superuser
sub q1
{
	return $node->safe_psql('postgres', $_[0]);
}

# as alice, who owns the jobs
sub qa
{
	return $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'alice' ]);
}

# store a workflow (alice's) given as JSON text (newlines allowed)
sub create_workflow
{
	my ($def) = @_;
	$def =~ s/\n\s*/ /g;
	return qa("SELECT workflow.create_workflow(\$wf\$$def\$wf\$)");
}

# run SQL as alice; the SQLSTATE of its error, or 'ok: <output>'
sub sqlstate_of
{
	my ($sql) = @_;
	my ($stdout, $stderr) = ('', '');
	$node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr,
		extra_params => [ '-U', 'alice' ]);
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "ok: $stdout";
}

# wait until a job is finished; returns its state
sub wait_finished
{
	my ($id) = @_;
	$node->poll_query_until('postgres',
		"SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $id")
	  or diag("job $id did not finish: "
		  . q1("SELECT execution || ' ' || coalesce(error::text, '') FROM workflow.jobs WHERE id = $id"));
	return q1("SELECT execution FROM workflow.jobs WHERE id = $id");
}

# wait until a job is in a state; true when it got there
sub wait_state
{
	my ($id, $state) = @_;
	return $node->poll_query_until('postgres',
		"SELECT execution = '$state' FROM workflow.jobs WHERE id = $id");
}

# the task runs of a job as "task:status ..."
sub runs
{
	my ($id) = @_;
	return q1(
		"SELECT string_agg(task || ':' || status, ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $id");
}

# wait until the runner executing job $id is inside pg_sleep; returns its pid
sub sleeping_runner
{
	my ($id) = @_;
	my $q =
	  "SELECT pid FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND query LIKE 'workflow job $id:%' AND wait_event = 'PgSleep'";
	$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($q) s")
	  or diag("no runner sleeping in job $id");
	return q1($q);
}

# Wait until the sweeper completed $n more passes: its heartbeat row is
# written in the same transaction as each pass.
sub sweeper_passes
{
	my ($n) = @_;
	for my $i (1 .. $n)
	{
		my $at = q1("SELECT active_at FROM workflow.runners WHERE id = 'sweeper'");
		return 0 if $at eq '';
		$node->poll_query_until('postgres',
			"SELECT active_at > '$at' FROM workflow.runners WHERE id = 'sweeper'")
		  or return 0;
	}
	return 1;
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

create_workflow(q{{"name": "ext", "timeout": "2s", "chain": [
  {"name": "pay", "task_type": "pay"}]}});
create_workflow(q{{"name": "timer", "chain": [
  {"name": "hold", "wait": "1s"},
  {"name": "after", "sql": "select 'after'"}]}});
create_workflow(q{{"name": "timer_only", "chain": [
  {"name": "hold", "wait": "1s"}]}});
create_workflow(q{{"name": "quick", "chain": [
  {"name": "q", "sql": "select 1"}]}});
create_workflow(q{{"name": "sleepy", "timeout": "30s", "chain": [
  {"name": "nap", "sql": "select pg_sleep(3)"}]}});
create_workflow(q{{"name": "sleepy_long", "timeout": "120s", "chain": [
  {"name": "nap", "sql": "select pg_sleep(60)"}]}});

###############################################################################
# (1) 70 timed-out external tasks, a timer and retention in the same run
###############################################################################

my $old = qa("SELECT workflow.create_job('quick')");
is(wait_finished($old), 'succeeded', '(1) a quick job succeeded (to be pruned later)');

qa("SELECT count(workflow.create_job('ext', jsonb_build_object('n', g))) FROM generate_series(1, 70) g");
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM workflow.poll_tasks('pay', 'wk-1', 100, '0')",
		extra_params => [ '-U', 'wk' ]),
	'70',
	'(1) the worker polled 70 external tasks');
is(q1("SELECT count(*) FROM workflow.jobs WHERE workflow = 'ext' AND execution = 'running'"),
	'70', '(1) 70 external tasks are running');

# from now on, every pass has 70 timed-out external tasks to handle
ok( $node->poll_query_until('postgres',
		"SELECT bool_and(execution <> 'running' OR deadline < now()) FROM workflow.jobs WHERE workflow = 'ext'"),
	'(1) the job timeout of the 70 tasks has passed');
my $timer = qa("SELECT workflow.create_job('timer')");
q1("UPDATE workflow.jobs SET finished_at = now() - interval '2 hours' WHERE id = $old");

ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 70 FROM workflow.jobs WHERE workflow = 'ext' AND execution = 'failed' AND error->>'message' = 'job timed out'"),
	'(1) all 70 external tasks were timed out');
is(wait_finished($timer), 'succeeded', '(1) the wait timer ended in the same run and its job succeeded');
is(runs($timer), 'hold:succeeded after:succeeded', '(1) the timer job ran both tasks');
ok( $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT 1 FROM workflow.jobs WHERE id = $old) AND NOT EXISTS (SELECT 1 FROM workflow.task_runs WHERE job_id = $old)"),
	'(1) the job older than the retention was pruned in the same run');
is(log_count(qr/cannot interrupt more than/), 0, '(1) no pass failed on the number of interrupts');

###############################################################################
# (2) one item's fault does not stop the others, nor repeats at every pass
###############################################################################

my @t = map { qa("SELECT workflow.create_job('timer', '{\"n\": $_}')") } (1 .. 3);
my $bad = $t[1];
q1( qq{
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
is(wait_finished($t[0]), 'succeeded', '(2) the first timer job succeeded');
is(wait_finished($t[2]), 'succeeded', '(2) the third timer job succeeded');
ok($node->wait_for_log(qr/WARNING:  workflow sweeper could not end the timer of job $bad\b/),
	'(2) the failure was logged as a WARNING with the job id');
ok(sweeper_passes(10), '(2) the sweeper completed 10 more passes');
is(q1("SELECT execution FROM workflow.jobs WHERE id = $bad"), 'waiting', '(2) the faulty job is still waiting');
is(log_count(qr/could not end the timer of job $bad\b/),
	1, '(2) the failure was not repeated at every pass');
q1('DROP TRIGGER fault ON workflow.task_runs; DROP FUNCTION public.fault()');
is(wait_finished($bad), 'succeeded', '(2) without the fault the job is handled at a later pass');

###############################################################################
# (3) open transactions hold jobs, a runner row and a target: no stall
###############################################################################

my $held = qa("SELECT workflow.create_job('timer', '{\"held\": true}')");
my $free = qa("SELECT workflow.create_job('timer', '{\"free\": true}')");
my $tgt = qa("SELECT workflow.create_job('timer_only', '{}', target => 'tx')");
ok(wait_state($held, 'waiting') && wait_state($free, 'waiting') && wait_state($tgt, 'waiting'),
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

is(wait_finished($free), 'succeeded', '(3) the timer of the free job ended meanwhile');
ok(sweeper_passes(5), '(3) the sweeper keeps completing passes');
is( q1("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow sweeper' AND wait_event_type = 'Lock'"),
	'0', '(3) the sweeper is not waiting for a lock');
is(q1("SELECT execution FROM workflow.jobs WHERE id = $held"), 'waiting', '(3) the held job is left for later');
ok($node->wait_for_log(qr/WARNING:  workflow sweeper could not end the timer of job $tgt\b/),
	'(3) ending the timer of the job whose target is held gave up (lock_timeout), with a WARNING');

$alice->query_safe("ROLLBACK");
$alice->quit;
$runner_row->query_safe("ROLLBACK");
$runner_row->quit;
$target_row->query_safe("ROLLBACK");
$target_row->quit;
is(wait_finished($held), 'succeeded', '(3) the held job is handled at a later pass');
is(wait_finished($tgt), 'succeeded', '(3) the job whose target was held is handled at a later pass');
is(q1("SELECT count(*) FROM workflow.target_locks WHERE target = 'tx'"), '0', '(3) its target was released');
ok( $node->poll_query_until('postgres',
		"SELECT bool_and(active_at > now() - interval '2 s') FROM workflow.runners WHERE kind IN ('runner', 'sweeper')"),
	'(3) the heartbeats of every in-server worker are written again');

###############################################################################
# (4) a rolled-back cancel_job does not interrupt the task; a released one does
###############################################################################

my $j1 = qa("SELECT workflow.create_job('sleepy')");
my $pid1 = sleeping_runner($j1);
ok($pid1, "(4) a runner ($pid1) is inside the task of job $j1");
qa( qq{
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
is(wait_finished($j1), 'succeeded', '(4) after rolled-back cancels the task finished and the job succeeded');
is(runs($j1), 'nap:succeeded', '(4) its one attempt succeeded');

my $j2 = qa("SELECT workflow.create_job('sleepy_long')");
my $pid2 = sleeping_runner($j2);
ok($pid2, "(4) a runner ($pid2) is inside the task of job $j2");
my $t0 = time();
qa( qq{
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
is(wait_finished($j2), 'canceled', '(4) the job is canceled');

###############################################################################
# (5) PREPARE TRANSACTION after cancel_job of a running job
###############################################################################

my $j3 = qa("SELECT workflow.create_job('sleepy_long')");
my $pid3 = sleeping_runner($j3);
ok($pid3, "(5) a runner ($pid3) is inside the task of job $j3");
is( sqlstate_of("BEGIN; SELECT workflow.cancel_job($j3); PREPARE TRANSACTION 'p_cancel';"),
	'0A000', '(5) PREPARE TRANSACTION after canceling a running job is refused with 0A000');
my ($stdout, $stderr) = ('', '');
$node->psql('postgres', "BEGIN; SELECT workflow.cancel_job($j3); PREPARE TRANSACTION 'p_cancel';",
	stdout => \$stdout, stderr => \$stderr, extra_params => [ '-U', 'alice' ]);
like($stderr, qr/cannot PREPARE a transaction that canceled a running job/, '(5) with the error message');
is(q1("SELECT count(*) FROM pg_prepared_xacts"), '0', '(5) nothing was prepared');
is(q1("SELECT execution FROM workflow.jobs WHERE id = $j3"), 'running', '(5) the job is still running');
is(q1("SELECT wait_event FROM pg_stat_activity WHERE pid = $pid3"), 'PgSleep', '(5) its task was not interrupted');

my $queued = qa("SELECT workflow.create_job('quick', run_at => now() + interval '1 day')");
is( sqlstate_of("BEGIN; SELECT workflow.cancel_job($queued); PREPARE TRANSACTION 'p_queued';"),
	"ok: t", '(5) the cancel of a queued job can be prepared');
qa("COMMIT PREPARED 'p_queued'");
is(q1("SELECT execution FROM workflow.jobs WHERE id = $queued"), 'canceled', '(5) and committed');

qa("SELECT workflow.cancel_job($j3)");
is(wait_finished($j3), 'canceled', '(5) a committed cancel ends the job');

q1("SELECT 1");
$node->stop;
done_testing();
