# 190_pgbouncer.pl: external workers behind PgBouncer in transaction pooling
# mode (README "Behind a connection pooler").
#
# PgBouncer runs as this test's OS user with its own configuration:
# pool_mode = transaction, default_pool_size = 2 (so a role's clients share
# at most two server connections), trust authentication for the roles of
# its auth_file, listening on a Unix socket of its own (port 5620).  Every
# call below goes through it: a worker's statements land on whichever
# server connection is free, so nothing may rely on session state.
#
# (1) PgBouncer applies the configuration (admin console: pool_mode
#     transaction, default_pool_size 2).
# (2) create_job (as an application role), poll_tasks without a wait, and
#     complete_task: the job succeeds; an empty poll returns nothing.
# (3) A long poll is woken by a job committed meanwhile (from another
#     client), and holds no snapshot while it waits.
# (4) The report of a task may run on another server connection than its
#     poll: with one server connection pinned by a transaction, the poll
#     runs on the other; then that one is pinned and the first freed, and
#     complete_task runs there.
# (5) complete_tasks reports five polled tasks in one call; fail_task
#     (not retryable) fails its job.
# (6) Six workers share two server connections: while two long polls hold
#     both, four clients wait in PgBouncer's queue; then 60 tasks are done
#     by the six, every poll and report on one of two server processes.
# (7) workflow-worker through PgBouncer runs a command for a task type end
#     to end (SQL -> external -> SQL, 30 jobs, 3 threads), its idle long
#     poll holds no snapshot, and SIGTERM drains it (its pending long poll
#     canceled through PgBouncer): exit 0.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $pgb_port = 5620;

my $node = WorkflowNode->create('pgbouncer', settings => { max_connections => '40' });
my $super = $node->q('SELECT current_user');
$node->create_role('app', 'workflow_user');
$node->create_role('payer', 'workflow_worker');

my $psql = $node->installed_command('psql');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sockdir = PostgreSQL::Test::Utils::tempdir_short;

###############################################################################
# PgBouncer
###############################################################################

# Debian installs it into /usr/sbin, which may not be on PATH
my ($pgbouncer) =
  grep { -x $_ } map { "$_/pgbouncer" } (split(/:/, $ENV{PATH} // ''), '/usr/sbin');
die 'pgbouncer not found on PATH nor in /usr/sbin (Debian package pgbouncer)'
  unless defined $pgbouncer;

open(my $ul, '>', "$tmp/userlist.txt") or die "could not write userlist.txt: $!";
print $ul qq{"$_" ""\n} for ($super, 'app', 'payer');
close($ul);

my $host = $node->host;
my $port = $node->port;
open(my $ini, '>', "$tmp/pgbouncer.ini") or die "could not write pgbouncer.ini: $!";
print $ini <<"EOC";
[databases]
postgres = host=$host port=$port dbname=postgres

[pgbouncer]
; no listen_addr: the Unix socket only
unix_socket_dir = $sockdir
listen_port = $pgb_port
auth_type = trust
auth_file = $tmp/userlist.txt
admin_users = $super
pool_mode = transaction
default_pool_size = 2
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 100
logfile = $tmp/pgbouncer.log
EOC
close($ini);

my $bouncer = IPC::Run::start([ $pgbouncer, "$tmp/pgbouncer.ini" ],
	'<', '/dev/null', '>', "$tmp/pgbouncer.out", '2>&1');
my %harnesses;    # name => IPC::Run harness, killed at the end if still running

my $pgb_connstr = "host=$sockdir port=$pgb_port";

# Run SQL through PgBouncer as $role in database $db (default postgres),
# stopping at the first error; returns ($ok, $stdout, $stderr).
sub pgb_run
{
	my ($role, $sql, $db) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ $psql, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d',
		  "$pgb_connstr dbname=" . ($db // 'postgres') . " user=$role", '-f', '-' ],
		'<', \$sql, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	chomp $out;
	return ($ok, $out, $err);
}

# Run SQL through PgBouncer as $role; returns its output, dies on an error.
sub pgb
{
	my ($role, $sql) = @_;
	my ($ok, $out, $err) = pgb_run($role, $sql);
	die "psql through pgbouncer as $role failed: $err\nSQL: $sql" unless $ok;
	return $out;
}

# A command of PgBouncer's admin console as rows of column => value.
sub pgb_admin
{
	my ($command) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[ $psql, '-XA', '-P', 'footer=off', '-d', "$pgb_connstr dbname=pgbouncer user=$super",
		  '-c', $command ],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	  or die "pgbouncer admin console: $command: $err";
	my ($header, @lines) = split /\n/, $out;
	my @cols = split /\|/, $header, -1;
	my @rows;
	for my $line (@lines)
	{
		my %row;
		@row{@cols} = split /\|/, $line, -1;
		push @rows, \%row;
	}
	return @rows;
}

# SHOW POOLS' row of the pool of $role in database postgres.
sub pool_of
{
	my ($role) = @_;
	my ($row) = grep { $_->{database} eq 'postgres' && $_->{user} eq $role } pgb_admin('SHOW POOLS');
	return $row // {};
}

# Wait until $cond->() is true; false on timeout.
sub wait_until
{
	my ($cond) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

# A psql through PgBouncer as $role in the background, fed through $$in.
sub start_psql
{
	my ($name, $role, $in, $out, $err) = @_;
	my $h = IPC::Run::start(
		[ $psql, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', "$pgb_connstr dbname=postgres user=$role",
		  '-f', '-' ],
		'<', $in, '>', $out, '2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$harnesses{$name} = $h;
	return $h;
}

# Send what is in $$in without waiting for an answer.
sub send_all
{
	my ($h, $in) = @_;
	$h->pump_nb while length $$in;
	return;
}

# Pump $h until $$out matches $re; dies (IPC::Run timeout) if it never does.
sub pump_to
{
	my ($h, $out, $re) = @_;
	$h->pump until $$out =~ $re;
	return;
}

ok(wait_until(sub { (pgb_run('app', 'SELECT 1'))[1] eq '1' }),
	'pgbouncer accepts connections')
  or diag(-e "$tmp/pgbouncer.log" ? slurp_file("$tmp/pgbouncer.log") : 'no pgbouncer log');

###############################################################################
# (1) the configuration
###############################################################################

my %config = map { $_->{key} => $_->{value} } pgb_admin('SHOW CONFIG');
is("$config{pool_mode} $config{default_pool_size}", 'transaction 2',
	'(1) pgbouncer: pool_mode transaction, default_pool_size 2');

###############################################################################
# (2) create_job, poll_tasks without a wait, complete_task
###############################################################################

$node->create_workflow(q{{"name": "ext", "chain": [{"name": "call", "task_type": "ping"}]}},
	as => 'app');
my $job = pgb('app', q{SELECT workflow.create_job('ext', '{"n": 1}')});
like($job, qr/^\d+$/, '(2) create_job through pgbouncer');
is(pgb('payer', q{SELECT count(*) FROM workflow.poll_tasks('pong', 'w-nowait', 1)}),
	'0', '(2) a poll without a wait and without a task returns nothing');
my $polled = pgb('payer',
	q{SELECT job_id, lease, input->'job'->'params'->>'n' FROM workflow.poll_tasks('ping', 'w-nowait', 1)});
my ($pjob, $lease, $n) = split /\|/, $polled;
is("$pjob/$n", "$job/1", '(2) poll_tasks without a wait claimed the job, with its input');
is(pgb('payer', qq{SELECT workflow.complete_task($pjob, $lease, '{"pong": true}')}),
	't', '(2) complete_task through pgbouncer');
is($node->wait_state($job), 'succeeded', '(2) the job succeeded');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $job"),
	'{"pong": true}', '(2) with the output of the task');

###############################################################################
# (3) a long poll woken by a job committed meanwhile
###############################################################################

my $poll_sql = q{SELECT job_id, lease FROM workflow.poll_tasks('ping', 'w-long', 1, '2 min')};
(my $poll_like = $poll_sql) =~ s/'/''/g;
my ($in, $out, $err) = ('', '', '');
my $poller = start_psql('poller', 'payer', \$in, \$out, \$err);
$in .= "$poll_sql;\n";
send_all($poller, \$in);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE usename = 'payer' AND query LIKE '$poll_like%' AND state = 'active'
   AND wait_event_type = 'Extension'
   AND backend_xmin IS NULL AND backend_xid IS NULL}),
	'(3) the long poll waits on a server connection, holding no snapshot and no transaction id');
is($out, '', '(3) nothing returned yet');
$job = pgb('app', q{SELECT workflow.create_job('ext', '{"n": 2}')});
pump_to($poller, \$out, qr/\n/);
($pjob, $lease) = $out =~ /^(\d+)\|(\d+)$/m;
is($pjob, $job, '(3) the long poll returned the job committed meanwhile');
is( $node->q(
		"SELECT claimed_at - created_at < interval '10 s' FROM workflow.jobs WHERE id = $job"),
	't', '(3) claimed at once, not when the two-minute wait ended');
$in .= "SELECT workflow.complete_task($pjob, $lease, '{\"woken\": true}');\n\\q\n";
$poller->finish;
delete $harnesses{poller};
is($out, "$job|$lease\nt\n", '(3) complete_task from the same client');
is($node->wait_state($job), 'succeeded', '(3) the job succeeded');

###############################################################################
# (4) a report on another server connection than its poll
###############################################################################

# pin one of the two server connections of role payer
my ($in_a, $out_a, $err_a) = ('', '', '');
my $pin_a = start_psql('pin_a', 'payer', \$in_a, \$out_a, \$err_a);
$in_a .= "BEGIN;\nSELECT pg_backend_pid();\n";
pump_to($pin_a, \$out_a, qr/^\d+\n/);
my ($pid_a) = $out_a =~ /^(\d+)/;

$job = pgb('app', q{SELECT workflow.create_job('ext', '{"n": 3}')});
($pjob, $lease, my $poll_pid) = split /\|/, pgb('payer',
	q{SELECT job_id, lease, pg_backend_pid() FROM workflow.poll_tasks('ping', 'w-moved', 1)});
is($pjob, $job, '(4) polled on the free server connection');
isnt($poll_pid, $pid_a, '(4) ... not on the pinned one');

# pin the connection of the poll, free the other one
my ($in_b, $out_b, $err_b) = ('', '', '');
my $pin_b = start_psql('pin_b', 'payer', \$in_b, \$out_b, \$err_b);
$in_b .= "BEGIN;\nSELECT pg_backend_pid();\n";
pump_to($pin_b, \$out_b, qr/^\d+\n/);
is($out_b, "$poll_pid\n", '(4) the second pin holds the connection of the poll');
$in_a .= "COMMIT;\n\\q\n";
$pin_a->finish;
delete $harnesses{pin_a};

my ($recorded, $report_pid) = split /\|/, pgb('payer',
	qq{SELECT workflow.complete_task($pjob, $lease, '{"moved": true}'), pg_backend_pid()});
is("$recorded $report_pid", "t $pid_a",
	'(4) complete_task accepted on the other server connection than the poll');
$in_b .= "COMMIT;\n\\q\n";
$pin_b->finish;
delete $harnesses{pin_b};
is($node->wait_state($job), 'succeeded', '(4) the job succeeded');

###############################################################################
# (5) complete_tasks and fail_task
###############################################################################

is( pgb('app', q{SELECT count(workflow.create_job('ext', jsonb_build_object('n', i))) FROM generate_series(10, 14) i}),
	'5', '(5) five jobs created in one statement');
my $batch = pgb('payer', <<'EOS');
SELECT array_agg(job_id ORDER BY job_id) AS ids, array_agg(lease ORDER BY job_id) AS leases,
       array_agg(jsonb_build_object('n', input->'job'->'params'->'n') ORDER BY job_id) AS outputs
  FROM workflow.poll_tasks('ping', 'w-batch', 10) \gset
SELECT count(*) FILTER (WHERE recorded)
  FROM workflow.complete_tasks(:'ids'::bigint[], :'leases'::bigint[], :'outputs'::jsonb[]);
EOS
is($batch, '5', '(5) complete_tasks recorded the five polled tasks in one call');
is( $node->q(q{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'ext' AND (params->>'n')::int BETWEEN 10 AND 14
   AND execution = 'succeeded' AND result = jsonb_build_object('n', (params->>'n')::int)}),
	'5', '(5) the five jobs succeeded with their outputs');

$job = pgb('app', q{SELECT workflow.create_job('ext', '{"n": 20}')});
($pjob, $lease) = split /\|/,
  pgb('payer', q{SELECT job_id, lease FROM workflow.poll_tasks('ping', 'w-fail', 1)});
is(pgb('payer', qq{SELECT workflow.fail_task($pjob, $lease, 'card declined', false)}),
	't', '(5) fail_task through pgbouncer');
is($node->wait_state($job), 'failed', '(5) the job failed');
is( $node->q(
		"SELECT status || ':' || (error->>'message') FROM workflow.task_runs WHERE job_id = $job"),
	'failed:card declined', '(5) with the error fail_task gave');

###############################################################################
# (6) six workers, two server connections
###############################################################################

my $nworkers = 6;
my $per_worker = 10;
my %workers;
for my $w (1 .. $nworkers)
{
	# each poll claims exactly one task: there are as many tasks as polls
	my $script = "\\set ON_ERROR_STOP 1\n";
	$script .= <<"EOS" for 1 .. $per_worker;
SELECT job_id AS j, lease AS l, pg_backend_pid() AS p
  FROM workflow.poll_tasks('share', 'w$w', 1, '2 min') \\gset
SELECT workflow.complete_task(:j, :l,
         jsonb_build_object('worker', 'w$w', 'poll_pid', :p, 'report_pid', pg_backend_pid()));
EOS
	my $file = "$tmp/w$w.sql";
	open(my $sf, '>', $file) or die "could not write $file: $!";
	print $sf $script;
	close($sf);
	my ($wout, $werr) = ('', '');
	my $h = IPC::Run::start(
		[ $psql, '-XAtq', '-d', "$pgb_connstr dbname=postgres user=payer", '-f', $file ],
		'<', '/dev/null', '>', \$wout, '2>', \$werr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$harnesses{"w$w"} = $h;
	$workers{"w$w"} = [ $h, \$wout, \$werr ];
}
ok( wait_until(
		sub {
			my $pool = pool_of('payer');
			($pool->{cl_waiting} // -1) == $nworkers - 2 && ($pool->{sv_active} // -1) == 2;
		}),
	'(6) two long polls hold both server connections, four clients wait in pgbouncer')
  or diag(explain(pool_of('payer')));
is($node->q(q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'payer'}),
	'2', '(6) role payer has two server processes for its six clients');

$node->create_workflow(q{{"name": "shared", "chain": [{"name": "s", "task_type": "share"}]}},
	as => 'app');
is( pgb('app',
		"SELECT count(workflow.create_job('shared', jsonb_build_object('i', i))) FROM generate_series(1, "
		  . $nworkers * $per_worker . ") i"),
	$nworkers * $per_worker, '(6) 60 jobs created');
my $all_ok = 1;
for my $w (sort keys %workers)
{
	my ($h, $wout, $werr) = @{ $workers{$w} };
	my $done = eval { $h->finish; 1 };
	if (!$done || $h->result(0) != 0)
	{
		$all_ok = 0;
		diag("worker $w failed: $$werr");
	}
	delete $harnesses{$w};
}
ok($all_ok, '(6) the six workers ended without an error');
$node->wait_workflow_finished('shared', '(6) six workers');
is( $node->q(q{
SELECT count(*) FILTER (WHERE execution = 'succeeded'),
       count(DISTINCT result->>'worker'),
       (SELECT count(DISTINCT pid) FROM workflow.jobs,
               LATERAL (VALUES (result->>'poll_pid'), (result->>'report_pid')) p(pid)
         WHERE workflow = 'shared')
  FROM workflow.jobs WHERE workflow = 'shared'}),
	'60|6|2', '(6) 60 tasks done by six workers on two server processes');

###############################################################################
# (7) workflow-worker through pgbouncer
###############################################################################

$node->create_workflow(
	q{{
  "name": "order",
  "chain": [
    {"name": "prepare",
     "sql": "select jsonb_build_object('amount', ($1->'job'->'params'->>'n')::int * 10)"},
    {"name": "pay", "task_type": "card"},
    {"name": "ship",
     "sql": "select jsonb_build_object('seen', $1->'results'->'pay', 'n', $1->'job'->'params'->'n')"}
  ]}}, as => 'app');

my $script = "$tmp/pay.sh";
open(my $fh, '>', $script) or die "could not write $script: $!";
print $fh <<'EOS';
input=$(cat)
amount=$(printf '%s' "$input" | sed -n 's/.*"amount": \([0-9][0-9]*\).*/\1/p')
printf '{"charged": %s, "job": %s}\n' "$amount" "$WORKFLOW_JOB_ID"
EOS
close($fh);

my $client_log = "$tmp/client.log";
my $client = IPC::Run::start(
	[ 'workflow-worker', '-d', "$pgb_connstr dbname=postgres user=payer",
	  '-t', 'card', '-n', '3', '--wait', '1 min', '--', 'sh', $script ],
	'<', '/dev/null', '>', "$tmp/client.out", '2>', $client_log);
$harnesses{client} = $client;

# Count the lines of the client's log that match $re.
sub client_log_count
{
	my ($re) = @_;
	return 0 unless -e $client_log;
	my $n = () = slurp_file($client_log) =~ /$re/gm;
	return $n;
}

ok(wait_until(sub { client_log_count(qr/started: worker id "[^"]+:\d+", task type "card"/) == 1 }),
	'(7) workflow-worker started through pgbouncer')
  or diag(-e $client_log ? slurp_file($client_log) : 'no log');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE usename = 'payer' AND state = 'active'
   AND query LIKE 'SELECT job_id, task, attempt, lease, lease_expires_at, input FROM workflow.poll_tasks(%'
   AND backend_xmin IS NULL AND backend_xid IS NULL}),
	'(7) its idle long poll holds no snapshot and no transaction id');

pgb('app', q{SELECT count(workflow.create_job('order', jsonb_build_object('n', i))) FROM generate_series(1, 30) i});
$node->wait_workflow_finished('order', '(7) workflow-worker');
is( $node->q(q{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'order' AND execution = 'succeeded'
   AND (result->'seen'->>'charged')::int = (params->>'n')::int * 10
   AND (result->'seen'->>'job')::bigint = id}),
	'30', '(7) 30 jobs succeeded; the last SQL task saw the output of the command');
is( $node->q(q{
SELECT count(*) FILTER (WHERE status = 'succeeded' AND runner_id LIKE '%:%'), count(*)
  FROM workflow.task_runs WHERE task = 'pay'}),
	'30|30', '(7) every external task was done once, by workflow-worker');
ok(wait_until(sub { client_log_count(qr/task=pay attempt=1 outcome=succeeded/) == 30 }),
	'(7) one log line per task');

# SIGTERM while its long poll waits: the poll is canceled through pgbouncer
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE usename = 'payer' AND state = 'active' AND wait_event_type = 'Extension'
   AND query LIKE 'SELECT job_id, task, attempt, lease, lease_expires_at, input FROM workflow.poll_tasks(%'}),
	'(7) idle again, in a long poll');
$client->signal('TERM');
ok(wait_until(sub { client_log_count(qr/stopped: every claimed task was reported/) == 1 }),
	'(7) SIGTERM: workflow-worker drained')
  or diag(slurp_file($client_log));
$client->finish;
delete $harnesses{client};
is($client->result(0), 0, '(7) workflow-worker exited 0');
unlike(slurp_file($client_log), qr/(warning|error):/, '(7) its log has no warning or error');

###############################################################################
# the end: stop pgbouncer
###############################################################################

$bouncer->signal('INT');
ok(eval { $bouncer->finish; 1 }, 'pgbouncer stopped');

END
{
	$_->kill_kill for values %harnesses;
	$bouncer->kill_kill if $bouncer && $bouncer->pumpable;
}

done_testing();
