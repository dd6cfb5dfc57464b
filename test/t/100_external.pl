# 100_external.pl: the external task protocol end to end, with the runners
# and the sweeper running (README "External tasks").
#
# (a) A long poll is woken at commit: a psql waiting in
#     `SELECT job_id, lease FROM workflow.poll_tasks('pay', 'w1', 1, '30 s')'
#     (seen in pg_stat_activity with wait_event_type Extension) returns the
#     job a create_job commits, within 200 ms of that commit (the commit
#     timestamp, track_commit_timestamp, to jobs.claimed_at) although
#     workflow.run_interval is 5s and the wait 30 s.  While it waits, the
#     polling backend holds no snapshot and no transaction id
#     (pg_stat_activity.backend_xmin and backend_xid are NULL) in that exact
#     call form; in another form (count(*), in a transaction block) it keeps
#     its snapshot, which shows the check can tell.  A waiting poll can be
#     canceled.
# (b) Lease expiry redelivers: with workflow.task_lease = 1s, a task w1
#     polled and never reported is taken back by the sweeper (a failed
#     attempt with lease_expired) and w2's poll gets it with attempt 2
#     (attempts 3); w1's late complete_task is refused with 55000, w2's is
#     accepted.
# (c) fail_task, retries and final failure, end to end: a task failed twice
#     then completed (backoff 200ms; a waiting long poll gets the retry once
#     it is due, not only when its wait ends) runs the next SQL task and the
#     job succeeds; a task failed, then expired, then failed again runs the
#     onerror chain (by a runner) and the job fails with the last error; a
#     non-retryable failure goes to onerror at once.
# (d) A mixed workflow SQL -> external -> SQL, 50 jobs: the runners run the
#     SQL tasks, a Perl loop plays the worker (poll_tasks with count and
#     wait, complete_task), and the last SQL task sees the external output.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('external',
	settings => {
		track_commit_timestamp => 'on',
		'workflow.run_interval' => '5s',
		'workflow.stale_after' => undef,
		'workflow.task_lease' => '1s',
	});

# the task runs of a job as "task:status:attempt:runner[:lease_expired]"
my @run_fields = qw(task status attempt runner lease_expired);

# a psql in the background, fed through $$in, its output in $$out
sub start_psql
{
	my ($in, $out, $err) = @_;
	my $h = IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-f', '-' ],
		'<', $in, '>', $out, '2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return $h;
}

# send what is in $$in without waiting for an answer
sub send_all
{
	my ($h, $in) = @_;
	$h->pump_nb while length $$in;
	return;
}

is($node->q('SHOW workflow.run_interval') . ' ' . $node->q('SHOW workflow.task_lease'),
	'5s 1s', 'run_interval is 5s, task_lease 1s');

###############################################################################
# (a) a long poll is woken at commit
###############################################################################

$node->create_workflow(q{{"name": "lp", "chain": [{"name": "charge", "task_type": "pay", "timeout": "1 min"}]}});

my $poll_sql = q{SELECT job_id, lease FROM workflow.poll_tasks('pay', 'w1', 1, '30 s')};
my ($in, $out, $err) = ('', '', '');
my $poller = start_psql(\$in, \$out, \$err);
$in .= "$poll_sql;\n";
send_all($poller, \$in);

(my $poll_like = $poll_sql) =~ s/'/''/g;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '$poll_like%' AND state = 'active' AND wait_event_type = 'Extension'",
		'1'),
	'(a) the long poll is waiting (pg_stat_activity: active, wait_event_type Extension)');
my ($pid, $xmin_null, $xid_null) = split /\|/, $node->q(
	"SELECT pid, backend_xmin IS NULL, backend_xid IS NULL FROM pg_stat_activity WHERE query LIKE '$poll_like%'");
is("$xmin_null/$xid_null", 't/t',
	'(a) while it waits, the polling backend advertises no xmin and no transaction id');
is($out, '', '(a) nothing returned yet');

# create the job and commit; note the transaction id for its commit time
my $t0 = time();
my ($job, $xid) = split /\|/, $node->q("SELECT workflow.create_job('lp', '{\"a\": 1}'), pg_current_xact_id()");
$poller->pump until $out =~ /\n/;
my $client_ms = (time() - $t0) * 1000;
like($out, qr/^$job\|\d+\n/, "(a) the poll returned the job ($job) with a lease");
my ($lease) = $out =~ /^\d+\|(\d+)/;

my ($latency, $state, $runner) = split /\|/, $node->q(
	"SELECT round(extract(epoch FROM claimed_at - pg_xact_commit_timestamp(xid('$xid'::xid8))) * 1000, 1), execution, runner_id
	   FROM workflow.jobs WHERE id = $job");
note("long poll wake-up: commit of create_job -> claim $latency ms (client side, create_job sent -> row received: "
	  . sprintf('%.1f', $client_ms) . ' ms)');
cmp_ok($latency, '>=', 0, '(a) claimed after the commit');
cmp_ok($latency, '<', 200, "(a) claimed $latency ms after the commit (run_interval 5s, wait 30 s)");
cmp_ok($client_ms, '<', 2000, sprintf('(a) the client had the row %.0f ms after sending create_job', $client_ms));
is("$state/$runner", 'running/w1', '(a) the job is running, claimed by w1');
is($node->q("SELECT workflow.complete_task($job, $lease, '{\"paid\": true}')"), 't', '(a) complete_task accepted');
is($node->wait_state($job), 'succeeded', '(a) the job succeeded');

# the same psql, now idle: the poll left no transaction open
is($node->q("SELECT state FROM pg_stat_activity WHERE pid = $pid"), 'idle', '(a) the polling session is idle afterwards');

# another form of call keeps its snapshot while it waits (so the check
# above can tell), and a waiting poll can be canceled
$in .= "BEGIN;\nSELECT count(*) FROM workflow.poll_tasks('pay.none', 'w1', 1, '30 s');\n";
send_all($poller, \$in);
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND state = 'active' AND wait_event_type = 'Extension'",
		'1'),
	'(a) a poll in a transaction block is waiting');
is($node->q("SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE pid = $pid"), 't',
	'(a) ... and keeps its snapshot (backend_xmin set)');
$node->q("SELECT pg_cancel_backend($pid)");
$poller->pump until $err =~ /canceling statement due to user request/;
pass('(a) a waiting poll is canceled by pg_cancel_backend');
$in .= "ROLLBACK;\n\\q\n";
$poller->finish;

###############################################################################
# (b) lease expiry redelivers
###############################################################################

$node->create_workflow(q{{"name": "lx", "chain": [{"name": "t", "task_type": "lease.t", "attempts": 3}]}});
my $jb = $node->q("SELECT workflow.create_job('lx', '{}')");
my ($j1, $l1, $a1) = split /\|/,
  $node->q("SELECT job_id, lease, attempt FROM workflow.poll_tasks('lease.t', 'w1')");
is("$j1/$a1", "$jb/1", '(b) w1 polled the task, attempt 1');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM workflow.task_runs WHERE job_id = $jb AND status = 'failed' AND runner_id = 'w1' AND (error ->> 'lease_expired')::boolean",
		'1'),
	'(b) the sweeper took the task back when its 1s lease expired');
my $held_ms = $node->q(
	"SELECT round(extract(epoch FROM finished_at - started_at) * 1000) FROM workflow.task_runs WHERE job_id = $jb");
note("(b) w1's lease was taken back $held_ms ms after the claim");
cmp_ok($held_ms, '>=', 1000, "(b) not before the lease ended ($held_ms ms)");

# w2 polls (waiting if need be) and extends its own 1s lease at once
my ($j2, $l2, $a2, $ext) = split /\|/, $node->q(
	"SELECT job_id, lease, attempt FROM workflow.poll_tasks('lease.t', 'w2', 1, '10 s') \\gset
	 SELECT :job_id, :lease, :attempt, workflow.extend_task(:job_id, :lease, '1 min') > now() + interval '50 s'");
is("$j2/$a2/$ext", "$jb/2/t", '(b) w2 got the task again, attempt 2 (and extended its lease)');
isnt($l2, $l1, '(b) under a new lease');
is($node->sqlstate_of("SELECT workflow.complete_task($jb, $l1, '\"late\"')"), '55000',
	"(b) w1's late complete_task is refused with 55000");
is($node->q("SELECT workflow.complete_task($jb, $l2, '\"w2\"')"), 't', "(b) w2's complete_task is accepted");
is($node->wait_state($jb), 'succeeded', '(b) the job succeeded');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $jb"), '"w2"', "(b) with w2's output");
is($node->runs($jb, @run_fields), 't:failed:1:w1:lease_expired t:succeeded:2:w2', '(b) task runs: expired attempt 1, attempt 2 by w2');

###############################################################################
# (c) fail_task, retries, final failure
###############################################################################

$node->create_workflow(q{{"name": "fr",
  "chain": [{"name": "call", "task_type": "fr.t", "attempts": 3, "delay": "200ms"},
            {"name": "after", "sql": "select $1 -> 'results' -> 'call'"}],
  "onerror": [{"name": "undo", "sql": "select 'undone'::text"}]}});

# poll (waiting up to 5 s) and report in one session; returns
# "job|attempt|report" and the time the poll took
sub poll_and
{
	my ($worker, $report) = @_;
	my $t = time();
	my $r = $node->q(
		"SELECT job_id, lease, attempt FROM workflow.poll_tasks('fr.t', '$worker', 1, '5 s') \\gset
		 SELECT :job_id, :attempt, $report");
	return ($r, (time() - $t) * 1000);
}

# C1: fails twice, then completes
my $c1 = $node->q("SELECT workflow.create_job('fr', '{\"c\": 1}')");
my ($r, $ms) = poll_and('w1', q{workflow.fail_task(:job_id, :lease, 'e1')});
is($r, "$c1|1|t", '(c) C1 attempt 1 failed by the worker');
($r, $ms) = poll_and('w2', q{workflow.fail_task(:job_id, :lease, 'e2')});
is($r, "$c1|2|t", '(c) C1 attempt 2, after the backoff, failed by the worker');
note(sprintf('(c) the long poll got the retry %.0f ms after the failure (delay 200ms)', $ms));
cmp_ok($ms, '<', 2000,
	sprintf('(c) a waiting long poll gets a retry once it is due (%.0f ms), not when its 5 s wait ends', $ms));
($r, $ms) = poll_and('w1', q{workflow.complete_task(:job_id, :lease, '{"ok": true}')});
is($r, "$c1|3|t", '(c) C1 attempt 3 completed');
is($node->wait_state($c1), 'succeeded', '(c) C1 succeeded: the runner ran the next SQL task');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $c1"), '{"ok": true}',
	'(c) C1: the SQL task saw the output of the external task');
like($node->runs($c1, @run_fields), qr/^call:failed:1:w1 call:failed:2:w2 call:succeeded:3:w1 after:succeeded:1:\S+$/,
	'(c) C1 task runs');
is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id = $c1 AND task = 'after' AND runner_id LIKE 'w_'"), '0',
	'(c) C1: the SQL task was run by an in-server runner');

# C2: fails, then its lease expires, then fails for good: onerror, failed
my $c2 = $node->q("SELECT workflow.create_job('fr', '{\"c\": 2}')");
($r) = poll_and('w1', q{workflow.fail_task(:job_id, :lease, 'first')});
is($r, "$c2|1|t", '(c) C2 attempt 1 failed by the worker');
($r) = poll_and('w1', q{'silent'});
is($r, "$c2|2|silent", '(c) C2 attempt 2 polled, then the worker goes silent');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM workflow.task_runs WHERE job_id = $c2 AND (error ->> 'lease_expired')::boolean",
		'1'),
	'(c) C2 attempt 2: the sweeper took it back');
($r) = poll_and('w2', q{workflow.fail_task(:job_id, :lease, 'last')});
is($r, "$c2|3|t", '(c) C2 attempt 3 failed by the worker');
is($node->wait_state($c2), 'failed', '(c) C2 failed');
is($node->q("SELECT error ->> 'message' || ' ' || (error ->> 'attempt') || ' ' || (error ->> 'worker') FROM workflow.jobs WHERE id = $c2"),
	'last 3 w2', '(c) C2 failed with the error of its last attempt');
like($node->runs($c2, @run_fields), qr/^call:failed:1:w1 call:failed:2:w1:lease_expired call:failed:3:w2 undo:succeeded:1:\S+$/,
	'(c) C2 task runs: failed, expired, failed, then the onerror task');

# C3: not retryable: onerror at once
my $c3 = $node->q("SELECT workflow.create_job('fr', '{\"c\": 3}')");
($r) = poll_and('w1', q{workflow.fail_task(:job_id, :lease, 'fatal', retryable => false)});
is($r, "$c3|1|t", '(c) C3 attempt 1 failed, not retryable');
is($node->wait_state($c3), 'failed', '(c) C3 failed');
like($node->runs($c3, @run_fields), qr/^call:failed:1:w1 undo:succeeded:1:\S+$/, '(c) C3: no retry, the onerror task ran');
is($node->q("SELECT count(*) FROM workflow.poll_tasks('fr.t', 'w1')"), '0', '(c) nothing left to poll');

###############################################################################
# (d) SQL -> external -> SQL, 50 jobs, a Perl worker
###############################################################################

$node->create_workflow(q{{"name": "mix", "chain": [
  {"name": "prep", "sql": "select jsonb_build_object('n', ($1 -> 'job' -> 'params' ->> 'i')::int)"},
  {"name": "ext", "task_type": "mix.ext"},
  {"name": "final", "sql": "select ($1 -> 'results' -> 'ext' ->> 'doubled')::int + 1"}]}});
is($node->q("SELECT count(workflow.create_job('mix', jsonb_build_object('i', i))) FROM generate_series(1, 50) i"),
	'50', '(d) 50 jobs created');

my $worker = $node->background_psql('postgres');
my ($polls, $done, $refused) = (0, 0, 0);
my $t_start = time();
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (time() < $deadline)
{
	my $rows = $worker->query_safe(
		"SELECT job_id, lease, input -> 'results' -> 'prep' ->> 'n' FROM workflow.poll_tasks('mix.ext', 'w-mix', 10, '1 s')");
	$polls++;
	my @reports;
	for my $line (split /\n/, $rows)
	{
		next unless $line =~ /^(\d+)\|(\d+)\|(\d+)$/;
		push @reports, sprintf(q{SELECT workflow.complete_task(%d, %d, '{"doubled": %d}');}, $1, $2, 2 * $3);
	}
	if (@reports)
	{
		my $res = $worker->query_safe(join("\n", @reports));
		my $n = () = $res =~ /^t$/mg;
		$done += $n;
		$refused += @reports - $n;
	}
	last if $worker->query_safe(
		"SELECT count(*) FROM workflow.jobs WHERE workflow = 'mix' AND execution IN ('succeeded', 'failed', 'canceled')") == 50;
}
$worker->quit;
note(sprintf('(d) 50 jobs in %.2f s, %d polls', time() - $t_start, $polls));
is($done, 50, "(d) the worker completed 50 tasks ($polls polls)");
is($refused, 0, '(d) no report was refused');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE workflow = 'mix' AND execution = 'succeeded'"), '50',
	'(d) every job succeeded');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE workflow = 'mix' AND result <> to_jsonb(2 * (params ->> 'i')::int + 1)"),
	'0', '(d) the last SQL task of every job saw the external output (result = 2 i + 1)');
is($node->q("SELECT string_agg(x, ' ' ORDER BY x)
          FROM (SELECT DISTINCT r.task || ':' || CASE WHEN r.runner_id = 'w-mix' THEN 'worker' ELSE 'runner' END
                                || ':' || r.status AS x
                  FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id WHERE j.workflow = 'mix') s"),
	'ext:worker:succeeded final:runner:succeeded prep:runner:succeeded',
	'(d) the runners ran the SQL tasks, the worker the external one, each once');
is($node->q("SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id WHERE j.workflow = 'mix'"),
	'150', '(d) three task runs per job');
is($node->q("SELECT kind || ' ' || alive FROM workflow.runner_status WHERE id = 'w-mix'"), 'external true',
	'(d) runner_status shows the worker as an external runner');

###############################################################################
# the end
###############################################################################

is($node->q("SELECT count(*) FROM workflow.jobs WHERE execution IN ('queued', 'running', 'waiting')"), '0',
	'nothing is left in progress');
my @bad = $node->log_lines(qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'server log: no PANIC, FATAL or crashed backend');

$node->stop;

done_testing();
