# 110_worker_client.pl: the C client workflow-worker (README "The worker client"),
# installed into PostgreSQL's bin directory (on PATH under prove_installcheck).
#
# (1) --help exits 0; unknown options, missing -t/-d/COMMAND, a malformed
#     connection string and an unreachable server exit 2 with a message.
# (2) 200 jobs of a mixed workflow SQL -> external -> SQL, the external task
#     run by the client with 4 threads and a shell script that reads a field
#     of its input: every job succeeds, and the last SQL task sees the
#     script's output under results.  While idle, the client's long poll
#     holds no snapshot and no transaction id.
# (3) A failing command (exit 1, stderr "card declined") with attempts 2:
#     two failed attempts carry that message and the job fails; a command
#     printing something that is not JSON fails its task with a clear error.
# (4) A command running 3 s with workflow.task_lease = 2s: the client extends
#     the lease, the job succeeds with one attempt and nothing expires.
# (5) The client survives a server restart: jobs created afterwards complete.
# (6) SIGTERM drains: with 4 commands of 2 s running and 2 jobs queued, the
#     client stops polling, reports the 4 tasks and exits 0; those jobs
#     succeeded, the 2 others are still queued, nothing is left running.
# (7) SIGUSR1 pauses polling (new jobs stay queued), SIGUSR2 resumes it.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('worker_client', settings => { max_connections => '40' });

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

# Wait until a log file has $count lines matching $re; false on timeout.
sub wait_for_log
{
	my ($log, $re, $count) = @_;
	$count //= 1;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my $text = -e $log ? slurp_file($log) : '';
		my $n = () = $text =~ /$re/gm;
		return 1 if $n >= $count;
		usleep(50_000);
	}
	diag("waiting for $count x /$re/ in $log, got:\n"
		  . (-e $log ? slurp_file($log) : '(no log)'));
	return 0;
}

# Count the lines of a log file that match $re.
sub count_log
{
	my ($log, $re) = @_;
	my $text = slurp_file($log);
	my $n = () = $text =~ /$re/gm;
	return $n;
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

###############################################################################
# (1) usage and start-up errors
###############################################################################

command_checks_all([ 'workflow-worker', '--help' ],
	0, [qr/Usage:/, qr/--batch=N/, qr/SIGUSR1/], [qr/^$/], '--help exits 0');
command_checks_all([ 'workflow-worker', '--bogus' ],
	2, [qr/^$/], [ qr/unrecognized option/, qr/Try "workflow-worker --help"/ ],
	'unknown option: exit 2');
command_checks_all(
	[ 'workflow-worker', '-d', $connstr, '--', 'cat' ],
	2, [qr/^$/], [qr/no task type given/], 'no -t: exit 2');
command_checks_all([ 'workflow-worker', '-t', 'x', '--', 'cat' ],
	2, [qr/^$/], [qr/no database given/], 'no -d: exit 2');
command_checks_all([ 'workflow-worker', '-d', $connstr, '-t', 'x' ],
	2, [qr/^$/], [qr/no command given/], 'no command: exit 2');
command_checks_all(
	[ 'workflow-worker', '-d', 'port=1 bogus', '-t', 'x', '--', 'cat' ],
	2, [qr/^$/], [qr/invalid connection string "port=1 bogus": missing "=" after "bogus"/],
	'malformed connection string: exit 2');
command_checks_all(
	[ 'workflow-worker', '-d', "host=$tmp/nowhere dbname=postgres", '-t', 'x', '--', 'cat' ],
	2, [qr/^$/], [qr/could not connect to the database: .*nowhere/],
	'unreachable server: exit 2');
command_checks_all(
	[ 'workflow-worker', '-d', $connstr, '-t', 'x', '--wait', '10 min', '--', 'cat' ],
	2, [qr/^$/], [qr/invalid value "10 min" for --wait/], '--wait over 5 minutes: exit 2');
command_checks_all(
	[ 'workflow-worker', '-d', $connstr, '-t', 'x', '-n', 'many', '--', 'cat' ],
	2, [qr/^$/], [qr/invalid value "many" for -n/], 'bad -n: exit 2');

###############################################################################
# (2) 200 jobs of SQL -> external -> SQL with 4 threads
###############################################################################

$node->create_workflow(q{{
  "name": "order",
  "chain": [
    {"name": "prepare",
     "sql": "select jsonb_build_object('amount', ($1->'job'->'params'->>'n')::int * 10)"},
    {"name": "pay", "task_type": "payment"},
    {"name": "ship",
     "sql": "select jsonb_build_object('seen', $1->'results'->'pay', 'n', $1->'job'->'params'->'n')"}
  ]}});

# reads the amount computed by "prepare" from its input
my $script = "$tmp/pay.sh";
open(my $fh, '>', $script) or die "could not write $script: $!";
print $fh <<'EOS';
input=$(cat)
amount=$(printf '%s' "$input" | sed -n 's/.*"amount": \([0-9][0-9]*\).*/\1/p')
printf '{"paid": true, "charged": %s, "job": %s}\n' "$amount" "$WORKFLOW_JOB_ID"
EOS
close($fh);

my ($pay, $pay_log) = start_client('pay', '-t', 'payment', '-n', '4', '--', 'sh', $script);
ok(wait_for_log($pay_log, qr/started: worker id "[^"]+:\d+", task type "payment"/),
	'payment client started');

# idle: its long poll holds neither a snapshot nor a transaction id
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND state = 'active'
   AND query LIKE 'SELECT job_id, task, attempt, lease, lease_expires_at, input FROM workflow.poll_tasks(%'
   AND backend_xmin IS NULL AND backend_xid IS NULL}),
	'an idle long poll holds no snapshot and no transaction id');

$node->safe_psql('postgres',
	q{SELECT workflow.create_job('order', jsonb_build_object('n', i)) FROM generate_series(1, 200) i});
$node->wait_workflow_finished('order', 'mixed workflow');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'order' AND execution = 'succeeded'
   AND result->'seen'->'paid' = 'true'
   AND (result->'seen'->>'charged')::int = (params->>'n')::int * 10
   AND (result->'seen'->>'job')::bigint = id}),
	'200', '200 jobs succeeded; the last SQL task saw the command output');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE status = 'succeeded' AND r.runner_id LIKE '%:%'),
       count(*) FILTER (WHERE status <> 'succeeded')
  FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
 WHERE j.workflow = 'order' AND r.task = 'pay'}),
	'200|0', 'one succeeded run of the external task per job, by the client');
ok(wait_for_log($pay_log, qr/job=\d+ task=pay attempt=1 outcome=succeeded duration=[\d.]+s$/m, 200),
	'one log line per task');
is($node->safe_psql('postgres',
		q{SELECT count(DISTINCT runner_id) FROM workflow.task_runs WHERE task = 'pay'}),
	'1', 'the threads share one worker id');

###############################################################################
# (5) the client survives a server restart
###############################################################################

$node->restart;
$node->safe_psql('postgres',
	q{SELECT workflow.create_job('order', jsonb_build_object('n', i)) FROM generate_series(1001, 1020) i});
$node->wait_workflow_finished('order', 'after a restart');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'order' AND execution = 'succeeded' AND (params->>'n')::int > 1000
   AND (result->'seen'->>'charged')::int = (params->>'n')::int * 10}),
	'20', 'jobs created after the restart completed');
like(slurp_file($pay_log), qr/poll connection: lost: .*\n(.*\n)*.*poll connection: reconnected/,
	'the client logged the loss and the reconnection');
is(stop_client('pay', $pay, $pay_log), 0, 'payment client: exit 0 on SIGTERM');

###############################################################################
# (3) failing commands
###############################################################################

$node->create_workflow(q{{
  "name": "declined",
  "chain": [ {"name": "charge", "task_type": "card", "attempts": 2, "delay": "100 ms"} ]}});
my ($card, $card_log) = start_client('card', '-t', 'card', '--',
	'sh', '-c', 'cat >/dev/null; echo "card declined" >&2; exit 1');
my $declined = $node->safe_psql('postgres', q{SELECT workflow.create_job('declined')});
$node->wait_workflow_finished('declined', 'failing command');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(attempt || ':' || status || ':' || (error->>'message'), ',' ORDER BY attempt)
  FROM workflow.task_runs WHERE job_id = $declined}),
	'1:failed:card declined,2:failed:card declined',
	'two failed attempts with the tail of stderr as the message');
is($node->safe_psql('postgres', "SELECT execution FROM workflow.jobs WHERE id = $declined"),
	'failed', 'the job failed');
ok(wait_for_log($card_log,
		qr/job=$declined task=charge attempt=2 outcome=failed duration=[\d.]+s error="card declined"/),
	'log line of the failed attempt');
is(stop_client('card', $card, $card_log), 0, 'card client: exit 0 on SIGTERM');

$node->create_workflow(q{{
  "name": "garbled",
  "chain": [ {"name": "talk", "task_type": "garble"} ]}});
my ($garble, $garble_log) = start_client('garble', '-t', 'garble', '--',
	'sh', '-c', 'cat >/dev/null; echo "this is not json"; exit 0');
my $garbled = $node->safe_psql('postgres', q{SELECT workflow.create_job('garbled')});
$node->wait_workflow_finished('garbled', 'invalid output');
like( $node->safe_psql(
		'postgres', qq{
SELECT status || ':' || (error->>'message') FROM workflow.task_runs WHERE job_id = $garbled}),
	qr/^failed:the command's output is not valid JSON.*invalid input syntax for type json/,
	'output that is not JSON fails the task with a clear error');
is(stop_client('garble', $garble, $garble_log), 0, 'garble client: exit 0 on SIGTERM');

###############################################################################
# (4) leases are extended while a command runs
###############################################################################

$node->append_conf('postgresql.conf', "workflow.task_lease = '2s'");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT current_setting('workflow.task_lease') = '2s'}),
	'workflow.task_lease is 2s');
$node->create_workflow(q{{
  "name": "slow",
  "chain": [ {"name": "crunch", "task_type": "slow"} ]}});
my ($slow, $slow_log) = start_client('slow', '-t', 'slow', '--',
	'sh', '-c', 'cat >/dev/null; sleep 3; echo "{\"slept\": 3}"');
my $slow_job = $node->safe_psql('postgres', q{SELECT workflow.create_job('slow')});
$node->wait_workflow_finished('slow', 'long command');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(attempt || ':' || status || ':' || coalesce(output::text, error::text), ',')
  FROM workflow.task_runs WHERE job_id = $slow_job}),
	'1:succeeded:{"slept": 3}',
	'a 3 s command under a 2 s lease: one attempt, succeeded, no expired lease');
is($node->safe_psql('postgres', "SELECT execution FROM workflow.jobs WHERE id = $slow_job"),
	'succeeded', 'the long job succeeded');
ok(wait_for_log($slow_log, qr/job=$slow_job task=crunch attempt=1 outcome=succeeded duration=[3-9]\.\d+s$/m),
	'the command ran longer than the lease');
is(stop_client('slow', $slow, $slow_log), 0, 'slow client: exit 0 on SIGTERM');

###############################################################################
# (6) SIGTERM drains
###############################################################################

$node->create_workflow(q{{
  "name": "drained",
  "chain": [ {"name": "work", "task_type": "drain"} ]}});
my ($drain, $drain_log) = start_client('drain', '-t', 'drain', '-n', '4', '--',
	'sh', '-c', 'cat >/dev/null; sleep 2; echo "{\"done\": true}"');
ok(wait_for_log($drain_log, qr/started:/), 'drain client started');
$node->safe_psql('postgres',
	q{SELECT workflow.create_job('drained', jsonb_build_object('i', i)) FROM generate_series(1, 6) i});
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE execution = 'running') = 4
   AND count(*) FILTER (WHERE execution = 'queued') = 2
  FROM workflow.jobs WHERE workflow = 'drained'}),
	'4 tasks running (one per thread), 2 queued');
my @running = split /\n/, $node->safe_psql('postgres',
	q{SELECT id FROM workflow.jobs WHERE workflow = 'drained' AND execution = 'running' ORDER BY id});
is(stop_client('drain', $drain, $drain_log), 0, 'SIGTERM: the client drained and exited 0');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(execution::text, ',' ORDER BY id) FILTER (WHERE id IN (} . join(',', @running) . q{)),
       count(*) FILTER (WHERE execution = 'queued'),
       count(*) FILTER (WHERE execution = 'running')
  FROM workflow.jobs WHERE workflow = 'drained'}),
	'succeeded,succeeded,succeeded,succeeded|2|0',
	'the running tasks were finished and reported; the queued ones were not claimed');
is(count_log($drain_log, qr/outcome=succeeded/), 4, 'four task lines in the log');
like(slurp_file($drain_log), qr/SIGTERM: draining/, 'the drain was logged');

###############################################################################
# (7) SIGUSR1 pauses polling, SIGUSR2 resumes
###############################################################################

# the 2 jobs left queued by (6) are taken by this client once it resumes
my ($pausable, $pause_log) = start_client('pause', '-t', 'drain', '-n', '2', '--',
	'sh', '-c', 'cat >/dev/null; echo "{\"done\": true}"');
ok(wait_for_log($pause_log, qr/started:/), 'pausable client started');
$node->wait_workflow_finished('drained', 'the jobs left by the drain');
$pausable->signal('USR1');
ok(wait_for_log($pause_log, qr/polling paused$/m), 'SIGUSR1: the client paused polling');
$node->safe_psql('postgres',
	q{SELECT workflow.create_job('drained', jsonb_build_object('i', i)) FROM generate_series(7, 9) i});

# time passes: an SQL job created afterwards is run by the in-server runners
$node->create_workflow(q{{"name": "tick", "chain": [ {"name": "t", "sql": "select 1"} ]}});
$node->safe_psql('postgres', q{SELECT workflow.create_job('tick')});
$node->wait_workflow_finished('tick', 'an SQL job meanwhile');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'drained' AND execution = 'queued' AND (params->>'i')::int >= 7}),
	'3', 'while paused, new jobs stay queued');
is(count_log($pause_log, qr/outcome=/), 2, 'no task claimed while paused');

$pausable->signal('USR2');
ok(wait_for_log($pause_log, qr/polling resumed$/m), 'SIGUSR2: polling resumed');
$node->wait_workflow_finished('drained', 'after SIGUSR2');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM workflow.jobs WHERE workflow = 'drained' AND execution = 'succeeded'}),
	'9', 'after SIGUSR2 the queued jobs completed');
is(stop_client('pause', $pausable, $pause_log), 0, 'pausable client: exit 0 on SIGTERM');

END
{
	$_->kill_kill for values %clients;
}

done_testing();
