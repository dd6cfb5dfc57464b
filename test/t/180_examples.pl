# 180_examples.pl: the example workers in other languages (README "Clients in
# other languages"): examples/python/worker.py (psycopg 3) and
# examples/node/worker.js (node-postgres), each run as a child process
# against the quick start's order workflow, connected as a role with
# workflow_worker only.  For each language:
#
# (1) Its idle long poll is the exact poll_tasks form outside a
#     transaction: the backend waits holding no snapshot and no
#     transaction id.
# (2) Orders (examples/order.sql itself, run by psql, for Python; then
#     jobs of its workflow for both): payable orders ship, with the
#     payment task's output {"charged": amount, "order": n} from the
#     worker; an order over 500 is declined twice (two failed attempts
#     carrying "card declined for order N") and released by the onerror
#     chain.
# (3) A batch: 12 jobs committed at once with --batch 10.  The server log
#     (log_statement = all for the worker's role) shows one complete_tasks
#     call with exactly the 10 job ids of the first poll; the 2 declined
#     ones fail after two attempts.
# (4) Refused leases: the worker is stopped (SIGSTOP) while its long poll
#     claims three tasks.  One job is canceled; one task's lease (timeout
#     1 s) expires and the sweeper hands it out again; the third stays
#     valid.  Resumed, the worker's complete_tasks is refused (55000), it
#     reports task by task, drops the two refused results and records the
#     valid one, then does the reissued task (attempt 2): the canceled job
#     stays canceled, the others succeed, and the worker goes on.
# (5) Lost connections: pg_terminate_backend of its backend, then a server
#     restart; each time it reconnects, and jobs created afterwards
#     complete.
# (6) SIGTERM with a batch in hand (claimed while it was stopped): it
#     reports the batch and exits 0; no task is left running under its
#     worker id.
# (7) SIGTERM while a second worker waits in a 5 minute long poll: the poll
#     is canceled and the worker exits 0 at once.
#
# The Python worker needs python3 with psycopg 3 (Debian: python3-psycopg);
# the Node worker needs node and npm: when examples/node/node_modules is
# missing, the test runs `npm ci` in a scratch copy (the npm registry must be
# reachable).  .ci/run installs all of them.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $root = abs_path(dirname(__FILE__) . '/../..');
my $tmp = PostgreSQL::Test::Utils::tempdir;

my $node = WorkflowNode->create('examples');
$node->q(q{
CREATE ROLE payments LOGIN;
GRANT workflow_worker TO payments;
ALTER ROLE payments SET log_statement = 'all';
});

my %workers;    # worker id => IPC::Run harness, killed at the end if still running

# True if @cmd runs and exits 0 (its output discarded).
sub runs_ok
{
	my @cmd = @_;
	my $ok = eval { IPC::Run::run(\@cmd, '<', '/dev/null', '>', '/dev/null', '2>', '/dev/null') };
	return $ok ? 1 : 0;
}

# The command line of each language's worker, minus its options.
my %command;
{
	my ($python) = grep { runs_ok($_, '-c', 'import psycopg') } ('python3', '/usr/bin/python3');
	die "no python3 with psycopg 3 found (Debian: apt-get install python3-psycopg)"
	  unless $python;
	$command{python} = [ $python, "$root/examples/python/worker.py" ];

	die "node not found (Debian: apt-get install nodejs npm)" unless runs_ok('node', '--version');
	my $dir = "$root/examples/node";
	if (!-d "$dir/node_modules/pg")
	{
		# a scratch copy with the pinned dependencies
		$dir = "$tmp/node";
		mkdir $dir or die "mkdir $dir: $!";
		for my $f (qw(package.json package-lock.json worker.js))
		{
			copy("$root/examples/node/$f", "$dir/$f") or die "copy $f: $!";
		}
		my ($out, $err) = ('', '');
		my $ok = eval {
			IPC::Run::run([ 'npm', 'ci', '--no-audit', '--no-fund', '--prefix', $dir ],
				'<', '/dev/null', '>', \$out, '2>', \$err);
		};
		die "npm ci in $dir failed:\n$out$err" unless $ok;
	}
	$command{node} = [ 'node', "$dir/worker.js" ];
}

# Start worker $wid of $lang with its stderr (the log) in a file; returns
# (harness, log file).  It connects through libpq's environment variables.
sub start_worker
{
	my ($lang, $wid, @opts) = @_;
	my $log = "$tmp/$wid.log";
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGUSER} = 'payments';
	local $ENV{PGDATABASE} = 'postgres';
	my $h = IPC::Run::start([ @{ $command{$lang} }, '--worker-id', $wid, @opts ],
		'<', '/dev/null', '>', "$tmp/$wid.out", '2>', $log);
	$workers{$wid} = $h;
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
	my $n = () = slurp_file($log) =~ /$re/gm;
	return $n;
}

# Wait until worker $wid exits after it logged that it stopped; returns its
# exit status (-1: it did not stop).
sub wait_exit
{
	my ($wid, $h, $log) = @_;
	if (!wait_for_log($log, qr/stopped: /))
	{
		$h->kill_kill;
		delete $workers{$wid};
		return -1;
	}
	$h->finish;
	delete $workers{$wid};
	return $h->result(0);
}

# The pid of worker $wid's backend once it waits in its long poll (on a
# backend other than $not_pid, if given).
sub idle_poll_pid
{
	my ($wid, $not_pid) = @_;
	my $q = qq{
SELECT pid FROM pg_stat_activity
 WHERE application_name = '$wid' AND state = 'active' AND wait_event_type = 'Extension'
   AND query LIKE 'SELECT job_id, task, attempt, lease, input FROM workflow.poll_tasks(%'};
	$q .= " AND pid <> $not_pid" if defined $not_pid;
	$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($q) s")
	  or diag("worker $wid is not waiting in a long poll");
	return $node->q($q);
}

# Create jobs of $workflow, one per params object, in one transaction;
# returns their ids in order.
sub create_jobs
{
	my ($workflow, @params) = @_;
	my $values = join(', ', map { "($_, '$params[$_]'::jsonb)" } 0 .. $#params);
	return split /\n/, $node->q(qq{
SELECT workflow.create_job('$workflow', p) FROM (VALUES $values) v(n, p) ORDER BY n});
}

# A job's state and its payment task runs: "execution|run run ...", a run
# "status:attempt:runner:X" where X is, for a success, whether the output is
# {"charged": amount, "order": n} of the job's params, and for a failure its
# message.
sub outcome
{
	my ($id) = @_;
	return $node->q(qq{
SELECT j.execution || '|' || coalesce((
  SELECT string_agg(r.status || ':' || r.attempt || ':' || coalesce(r.runner_id, '-') || ':'
           || CASE WHEN r.status = 'succeeded'
                   THEN (r.output = jsonb_build_object('charged', j.params->'amount',
                                                       'order', (j.params->>'order')::int))::text
                   ELSE coalesce(r.error->>'message', '') END,
         ' ' ORDER BY r.id)
    FROM workflow.task_runs r WHERE r.job_id = j.id AND r.task = 'payment'), '')
  FROM workflow.jobs j WHERE j.id = $id});
}

# The jobs' states, joined by ','.
sub states
{
	my @ids = @_;
	return $node->q('SELECT string_agg(execution::text, \',\' ORDER BY id) FROM workflow.jobs WHERE id IN ('
		  . join(',', @ids) . ')');
}

# Wait until every job of @ids has finished.
sub wait_done
{
	my ($what, @ids) = @_;
	ok( $node->poll_query_until(
			'postgres', 'SELECT bool_and(execution IN (\'succeeded\', \'failed\', \'canceled\')) FROM workflow.jobs WHERE id IN ('
			  . join(',', @ids) . ')'),
		"$what: the jobs finished");
	return;
}

###############################################################################
# the workflows: the quick start's (examples/order.sql, run below) and two
# with the payment task alone, whose leases last 1 minute and 1 second
###############################################################################

$node->create_workflow(q{{
  "name": "charge",
  "chain": [ {"name": "payment", "task_type": "payment",
              "attempts": 2, "backoff": "fixed", "delay": "100 ms", "timeout": "1 min"} ]}});
$node->create_workflow(q{{
  "name": "charge_short",
  "chain": [ {"name": "payment", "task_type": "payment",
              "attempts": 2, "backoff": "fixed", "delay": "100 ms", "timeout": "1 s"} ]}});

my $order_base = 10;
for my $lang (qw(python node))
{
	# a long wait: a poll must not end on its own while (4) and (6) hold
	# the worker stopped
	my $wid = "$lang-1";
	my ($h, $log) = start_worker($lang, $wid, '--batch', '10', '--wait', '5 min');
	ok(wait_for_log($log, qr/started: worker id "\Q$wid\E", task type "payment"/),
		"$lang: worker started");

	###########################################################################
	# (1) the idle long poll holds no snapshot and no transaction id
	###########################################################################

	my $pid = idle_poll_pid($wid);
	is( $node->q(qq{
SELECT usename || ':' || (backend_xmin IS NULL) || ':' || (backend_xid IS NULL)
  FROM pg_stat_activity WHERE pid = $pid}),
		'payments:true:true',
		"$lang: the idle long poll (role payments) holds no snapshot and no transaction id");

	###########################################################################
	# (2) orders
	###########################################################################

	if ($lang eq 'python')
	{
		# the quick start's script: tables, the order workflow, 4 jobs
		$node->q(slurp_file("$root/examples/order.sql"));
		my %job = map { split /\|/ } split /\n/,
		  $node->q(q{SELECT params->>'order', id FROM workflow.jobs WHERE workflow = 'order'});
		is(outcome($job{1}), "succeeded|succeeded:1:$wid:true",
			'order.sql: order 1 paid by the Python worker');
		is( outcome($job{4}),
			"failed|failed:1:$wid:card declined for order 4 failed:2:$wid:card declined for order 4",
			'order.sql: order 4 declined twice');
		is( join(',', sort map { outcome($job{$_}) } (2, 3)),
			"failed|,succeeded|succeeded:1:$wid:true",
			'order.sql: of the two lamp orders, one was paid, the other out of stock');
		is( $node->q(q{
SELECT string_agg(o.id || ':' || o.state || ':' || coalesce((p.amount = o.amount)::text, '-'), ',' ORDER BY o.id)
  FROM public.orders o LEFT JOIN public.payments p ON p.order_id = o.id WHERE o.id IN (1, 4)}),
			'1:shipped:true,4:released:-',
			'order.sql: order 1 shipped with its payment, order 4 released');
	}

	$node->q(q{UPDATE public.stock SET available = 10 WHERE item = 'book'});
	my @orders = map { $order_base + $_ } 1 .. 3;
	my @ids = create_jobs('order',
		qq({"order": $orders[0], "item": "book", "amount": 20}),
		qq({"order": $orders[1], "item": "book", "amount": 90.5}),
		qq({"order": $orders[2], "item": "book", "amount": 900}));
	wait_done("$lang: orders", @ids);
	is(states(@ids), 'succeeded,succeeded,failed', "$lang: two orders paid, one declined");
	is(outcome($ids[1]), "succeeded|succeeded:1:$wid:true",
		"$lang: the payment output of a paid order (amount 90.5)");
	is( outcome($ids[2]),
		"failed|failed:1:$wid:card declined for order $orders[2] failed:2:$wid:card declined for order $orders[2]",
		"$lang: the declined order failed after two attempts");
	is( $node->q(qq{
SELECT string_agg(o.id || ':' || o.state || ':' || coalesce((p.amount = o.amount)::text, '-'), ',' ORDER BY o.id)
  FROM public.orders o LEFT JOIN public.payments p ON p.order_id = o.id
 WHERE o.id IN ($orders[0], $orders[1], $orders[2])}),
		"$orders[0]:shipped:true,$orders[1]:shipped:true,$orders[2]:released:-",
		"$lang: the paid orders shipped with their payments, the declined one was released");

	###########################################################################
	# (3) a batch of 10 reported with one complete_tasks call
	###########################################################################

	my $offset = -s $node->logfile;
	@ids = create_jobs('charge',
		map { sprintf('{"order": %d, "amount": %d}', 1000 * ($lang eq 'node' ? 2 : 1) + $_, 50 * $_) }
		  1 .. 12);
	wait_done("$lang: batch", @ids);
	is( join(',', map { outcome($_) } @ids[ 0 .. 9 ]),
		join(',', ("succeeded|succeeded:1:$wid:true") x 10),
		"$lang: the 10 payable jobs succeeded with the worker's outputs");
	like(outcome($ids[11]), qr/^failed\|failed:1:\Q$wid\E:card declined for order \d+ failed:2:/,
		"$lang: a declined job of the batch failed after two attempts");
	my $server_log = slurp_file($node->logfile, $offset);
	my @batches = $server_log =~
	  /\Q$wid\E LOG:  execute [^\n]*workflow\.complete_tasks\([^\n]*\n[^\n]*\Q$wid\E DETAIL:  parameters: \$1 = '\{([0-9,]+)\}'/gi;
	is($batches[0] // '', join(',', @ids[ 0 .. 9 ]),
		"$lang: one complete_tasks call reported the 10 tasks of the first poll");
	unlike($server_log, qr/\Q$wid\E LOG:  execute [^\n]*workflow\.complete_task\(/,
		"$lang: no task of the batch was reported on its own");

	###########################################################################
	# (4) refused leases: a canceled job, an expired lease
	###########################################################################

	idle_poll_pid($wid);
	$h->signal('STOP');
	# one transaction: one wake-up, one poll claims the three
	my ($canceled, $expired, $valid) = split /\|/, $node->q(q{
SELECT workflow.create_job('charge', '{"order": 1, "amount": 10}'),
       workflow.create_job('charge_short', '{"order": 2, "amount": 20}'),
       workflow.create_job('charge', '{"order": 3, "amount": 30}')});
	# (the 1 s lease may have expired already)
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT (SELECT count(*) = 2 FROM workflow.jobs
         WHERE id IN ($canceled, $valid) AND execution = 'running' AND runner_id = '$wid')
   AND (EXISTS (SELECT FROM workflow.jobs WHERE id = $expired AND execution = 'running' AND runner_id = '$wid')
        OR EXISTS (SELECT FROM workflow.task_runs WHERE job_id = $expired AND runner_id = '$wid'))}),
		"$lang: the stopped worker's long poll claimed the three tasks");
	is($node->q("SELECT workflow.cancel_job($canceled)"), 't', "$lang: one job canceled meanwhile");
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT count(*) = 1 FROM workflow.task_runs WHERE job_id = $expired AND (error->>'lease_expired')::boolean}),
		"$lang: the lease of another one expired");
	$h->signal('CONT');
	wait_done("$lang: refused leases", $canceled, $expired, $valid);
	is(states($canceled, $expired, $valid), 'canceled,succeeded,succeeded',
		"$lang: the canceled job stayed canceled, the two others succeeded");
	is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id = $canceled AND status = 'succeeded'"),
		'0', "$lang: no success was recorded for the canceled job");
	is( $node->runs($expired, qw(task status attempt runner lease_expired)),
		"payment:failed:1:$wid:lease_expired payment:succeeded:2:$wid",
		"$lang: the expired task was done again under its new lease");
	is(outcome($valid), "succeeded|succeeded:1:$wid:true",
		"$lang: the valid result of the refused batch was recorded on its own");
	ok(wait_for_log($log, qr/complete_tasks refused a lease of the batch; reporting task by task/),
		"$lang: the worker logged the refused batch");
	is( count_log($log, qr/job=(?:$canceled|$expired) lease refused, result dropped/),
		2, "$lang: and dropped the two refused results");

	###########################################################################
	# (5) lost connections: pg_terminate_backend, then a restart
	###########################################################################

	$pid = idle_poll_pid($wid);
	$node->q("SELECT pg_terminate_backend($pid)");
	ok(idle_poll_pid($wid, $pid) ne '', "$lang: the worker polls again on a new connection");
	@ids = create_jobs('charge', '{"order": 1, "amount": 1}', '{"order": 2, "amount": 2}');
	wait_done("$lang: after pg_terminate_backend", @ids);
	is(states(@ids), 'succeeded,succeeded', "$lang: jobs created after pg_terminate_backend succeeded");

	$node->restart;
	idle_poll_pid($wid);
	@ids = create_jobs('charge', '{"order": 1, "amount": 1}', '{"order": 2, "amount": 2}');
	wait_done("$lang: after a restart", @ids);
	is(states(@ids), 'succeeded,succeeded', "$lang: jobs created after a server restart succeeded");
	my ($lost, $back) =
	  (count_log($log, qr/connection lost: .*; reconnecting$/m), count_log($log, qr/reconnected$/m));
	ok($lost >= 2 && $lost == $back,
		"$lang: the worker logged both losses and reconnections ($lost lost, $back reconnected)");

	###########################################################################
	# (6) SIGTERM with a batch in hand
	###########################################################################

	idle_poll_pid($wid);
	$h->signal('STOP');
	@ids = create_jobs('charge', map { qq({"order": $_, "amount": $_}) } 1 .. 3);
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT count(*) = 3 FROM workflow.jobs
 WHERE id IN (@{[ join(',', @ids) ]}) AND execution = 'running' AND runner_id = '$wid'}),
		"$lang: the stopped worker holds a batch of three");
	$h->signal('TERM');
	$h->signal('CONT');
	is(wait_exit($wid, $h, $log), 0, "$lang: SIGTERM: the worker exited with status 0");
	like(slurp_file($log), qr/SIGTERM: stopping after the current batch\n(?:.*\n)*.*stopped: every claimed task was reported$/m,
		"$lang: it logged the stop");
	is(join(',', map { outcome($_) } @ids), join(',', ("succeeded|succeeded:1:$wid:true") x 3),
		"$lang: the batch in hand was done and reported");
	is($node->q("SELECT count(*) FROM workflow.jobs WHERE runner_id = '$wid' AND execution = 'running'"),
		'0', "$lang: no task is left running under its worker id");

	###########################################################################
	# (7) SIGTERM cancels a long poll
	###########################################################################

	my $wid2 = "$lang-2";
	my ($h2, $log2) = start_worker($lang, $wid2, '--wait', '5 min');
	idle_poll_pid($wid2);
	$h2->signal('TERM');
	my $started = time;
	is(wait_exit($wid2, $h2, $log2), 0, "$lang: SIGTERM during a 5 minute long poll: exit status 0");
	cmp_ok(time - $started, '<', 60, "$lang: at once, not when the poll's wait ended");
	ok( $node->poll_query_until(
			'postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = '$wid2'"),
		"$lang: its connection is closed");

	$order_base += 10;
}

END
{
	$_->kill_kill for values %workers;
}

done_testing();
