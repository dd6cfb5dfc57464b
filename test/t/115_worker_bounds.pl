# 115_worker_bounds.pl: workflow-worker keeps its commands within their
# bounds (README "The worker client"; the client's file banner, "Bounds").
#
# (1) A task with a 2 s timeout whose command sleeps 30 s fails within
#     15 s, with the client's message in workflow.task_runs (not the
#     sweeper's expired lease), and the command's process is gone; a
#     command that ignores SIGTERM is killed (SIGKILL after the grace).
# (2) cancel_job while the command runs: the next extend_task finds the
#     lease invalid, and the command's process is gone soon after.
# (4) A client stopped (SIGSTOP) with a claim in flight: the task's lease
#     ends and the sweeper takes the task back while the client is stopped;
#     after SIGCONT the client does not run the command.
# (3) kill -9 of the client while its command sleeps: the command's
#     process is gone soon after.  Last, as a killed client's connections
#     may linger in the server for a while.
#
# Each command writes its pid (or its run) to a file; processes are
# checked by pid.  A zombie counts as gone: the init process of a container
# may not reap orphans.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(usleep time);
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# leases of tasks without a timeout last 4 s: extended every 2 s
my $node = WorkflowNode->create('worker_bounds',
	settings => { 'workflow.task_lease' => '4s' });

my $connstr = $node->connstr('postgres');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my %clients;    # name => IPC::Run harness, killed at the end if still running

# Start the client in the background, its stderr (the log) into a file.
sub start_client
{
	my ($name, @args) = @_;
	my $log = "$tmp/$name.log";
	my $h = IPC::Run::start([ 'workflow-worker', '-d', $connstr, @args ],
		'<', '/dev/null', '>', "$tmp/$name.out", '2>', $log);
	$clients{$name} = $h;
	return ($h, $log);
}

# Wait until a log file has a line matching $re; false on timeout.
sub wait_for_log
{
	my ($log, $re) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if -e $log && slurp_file($log) =~ $re;
		usleep(50_000);
	}
	diag("waiting for /$re/ in $log, got:\n" . (-e $log ? slurp_file($log) : '(no log)'));
	return 0;
}

# SIGTERM a client and wait for it to exit; returns its exit status.
sub stop_client
{
	my ($name, $h, $log) = @_;
	$h->signal('TERM');
	if (!wait_for_log($log, qr/stopped: every claimed task was reported/))
	{
		$h->kill_kill;
		delete $clients{$name};
		return -1;
	}
	$h->finish;
	delete $clients{$name};
	return $h->result(0);
}

# Wait until a command has written its pid into $file; returns the pid.
sub wait_for_pid
{
	my ($file) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return $1 if -e $file && slurp_file($file) =~ /^(\d+)\n/;
		usleep(50_000);
	}
	diag("no pid in $file");
	return 0;
}

# Is process $pid running (a zombie is not)?
sub alive
{
	my ($pid) = @_;
	return 0 unless $pid && kill(0, $pid);
	my $stat = eval { slurp_file("/proc/$pid/stat") } // '';
	return $stat !~ /^\d+ \(.*\) Z /s;
}

# Wait at most $seconds until process $pid is gone; true if it is.
sub wait_gone
{
	my ($pid, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time < $deadline)
	{
		return 1 unless alive($pid);
		usleep(50_000);
	}
	return !alive($pid);
}

# The message of the failed run(s) of job $id.
sub run_errors
{
	my ($id) = @_;
	return $node->safe_psql('postgres', qq{
SELECT string_agg(status || ':' || coalesce(error->>'message', '')
                  || CASE WHEN (error->>'lease_expired')::boolean THEN ':lease_expired' ELSE '' END,
                  ',' ORDER BY id)
  FROM workflow.task_runs WHERE job_id = $id});
}

###############################################################################
# (1) the task's timeout holds
###############################################################################

$node->create_workflow(q{{
  "name": "bounded",
  "chain": [ {"name": "nap", "task_type": "nap", "timeout": "2 s"} ]}});
my ($nap, $nap_log) = start_client('nap', '-t', 'nap', '--',
	'sh', '-c', 'cat >/dev/null; echo $$ > "$0"; exec sleep 30', "$tmp/nap.pid");
ok(wait_for_log($nap_log, qr/started:/), 'nap client started');

my $start = time;
my $nap_job = $node->create_job('bounded');
my $nap_pid = wait_for_pid("$tmp/nap.pid");
ok(alive($nap_pid), 'the command runs');
is($node->wait_state($nap_job), 'failed', 'the job of a command running past its timeout failed');
my $took = time - $start;
cmp_ok($took, '<', 15, sprintf('it failed after %.1f s, well before the command\'s 30 s', $took));
is(run_errors($nap_job),
	"failed:the command did not finish within the task's timeout of 2 s and was stopped",
	'task_runs has the client\'s error, not an expired lease');
ok(wait_gone($nap_pid, 10), 'the command\'s process is gone');
ok(wait_for_log($nap_log,
		qr/job=$nap_job task=nap attempt=1 outcome=failed duration=[\d.]+s error="the command did not finish within the task's timeout of 2 s/),
	'the log line says the task timed out');
is(stop_client('nap', $nap, $nap_log), 0, 'nap client: exit 0 on SIGTERM');

# a command that ignores SIGTERM (sh and its sleep) gets SIGKILL
my ($deaf, $deaf_log) = start_client('deaf', '-t', 'nap', '--',
	'sh', '-c', 'cat >/dev/null; trap "" TERM; echo $$ > "$0"; sleep 30; echo "{}"',
	"$tmp/deaf.pid");
ok(wait_for_log($deaf_log, qr/started:/), 'client of a command ignoring SIGTERM started');
$start = time;
my $deaf_job = $node->create_job('bounded');
my $deaf_pid = wait_for_pid("$tmp/deaf.pid");
is($node->wait_state($deaf_job), 'failed', 'the job of a command ignoring SIGTERM failed');
$took = time - $start;
cmp_ok($took, '<', 15, sprintf('it failed after %.1f s (timeout, then SIGKILL after the grace)', $took));
like(run_errors($deaf_job), qr/^failed:the command did not finish within the task's timeout of 2 s and was stopped$/,
	'with the timeout as its error');
ok(wait_gone($deaf_pid, 10), 'the command ignoring SIGTERM is gone');
is(stop_client('deaf', $deaf, $deaf_log), 0, 'deaf client: exit 0 on SIGTERM');

###############################################################################
# (2) a canceled job's command is stopped
###############################################################################

# no timeout: the lease is workflow.task_lease (4 s), extended every 2 s
$node->create_workflow(q{{
  "name": "held",
  "chain": [ {"name": "hold", "task_type": "hold"} ]}});
my ($hold, $hold_log) = start_client('hold', '-t', 'hold', '--',
	'sh', '-c', 'cat >/dev/null; echo $$ > "$0"; exec sleep 60', "$tmp/hold.pid");
ok(wait_for_log($hold_log, qr/started:/), 'hold client started');
my $hold_job = $node->create_job('held');
my $hold_pid = wait_for_pid("$tmp/hold.pid");
ok(alive($hold_pid), 'the command runs');
$node->safe_psql('postgres', "SELECT workflow.cancel_job($hold_job)");
ok(wait_gone($hold_pid, 20), 'the command of the canceled job is gone soon after the cancel');
ok(wait_for_log($hold_log,
		qr/job=$hold_job task=hold attempt=1 outcome=stale-lease duration=[\d.]+s error="command stopped, result dropped: lease \d+ is no longer valid"/),
	'the client logged that it stopped the command and dropped its result');
is($node->safe_psql('postgres', "SELECT execution FROM workflow.jobs WHERE id = $hold_job"),
	'canceled', 'the job stays canceled');
is(stop_client('hold', $hold, $hold_log), 0, 'hold client: exit 0 on SIGTERM');

###############################################################################
# (4) a stopped client does not run a task whose lease ended meanwhile
###############################################################################

$node->create_workflow(q{{
  "name": "late",
  "chain": [ {"name": "tardy", "task_type": "late", "timeout": "2 s"} ]}});
my $late_runs = "$tmp/late.runs";
my ($late, $late_log) = start_client('late', '-t', 'late', '--worker-id', 'late-1',
	'--wait', '5 min', '--',
	'sh', '-c', 'cat >/dev/null; echo "$WORKFLOW_WORKER_ID $WORKFLOW_LEASE" >> "$0"', $late_runs);
ok(wait_for_log($late_log, qr/started:/), 'late client started');

# its long poll waits in the server (no other client runs now)
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND state = 'active'
   AND query LIKE 'SELECT job_id, task, attempt, lease, lease_expires_at, input FROM workflow.poll_tasks(%'}),
	'the client waits in its long poll');
$late->signal('STOP');

# the poll claims the task for the stopped client: its answer waits in the
# socket, as when a client is stopped right after its poll returned
my $late_job = $node->create_job('late');
ok( $node->poll_query_until(
		'postgres',
		"SELECT execution = 'running' AND runner_id = 'late-1' FROM workflow.jobs WHERE id = $late_job"),
	'the task was claimed for the stopped client');

# time must pass for the 2 s lease to end: wait for the sweeper's record of
# its expiry (attempts 1: the job fails)
is($node->wait_state($late_job), 'failed', 'the lease expired while the client was stopped');
$late->signal('CONT');

# the client has dealt with the task once it logs it, or the command ran
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	last if -e $late_runs || slurp_file($late_log) =~ /job=$late_job task=tardy attempt=1 outcome=/;
	usleep(50_000);
}
like(slurp_file($late_log),
	qr/job=$late_job task=tardy attempt=1 outcome=skipped duration=[\d.]+s error="command not run: lease \d+ has ended"/,
	'after SIGCONT the client skipped the task, saying why');
ok(!-e $late_runs, 'the command did not run')
  or diag('runs: ' . slurp_file($late_runs));
is(run_errors($late_job), 'failed:lease of worker "late-1" expired:lease_expired',
	'the only run of the task is the sweeper\'s record of the expired lease');
is(stop_client('late', $late, $late_log), 0, 'late client: exit 0 on SIGTERM');

###############################################################################
# (3) the commands die with the client
###############################################################################

$node->create_workflow(q{{
  "name": "orphaned",
  "chain": [ {"name": "linger", "task_type": "orphan"} ]}});
my ($orphan, $orphan_log) = start_client('orphan', '-t', 'orphan', '--',
	'sh', '-c', 'cat >/dev/null; echo $$ > "$0"; exec sleep 60', "$tmp/orphan.pid");
ok(wait_for_log($orphan_log, qr/started:/), 'orphan client started');
$node->create_job('orphaned');
my $orphan_pid = wait_for_pid("$tmp/orphan.pid");
ok(alive($orphan_pid), 'the command runs');
$orphan->signal('KILL');
$orphan->finish;
delete $clients{orphan};
ok(wait_gone($orphan_pid, 10), 'after kill -9 of the client its command is gone');

END
{
	$_->kill_kill for values %clients;
}

done_testing();
