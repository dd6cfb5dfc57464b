# 060_crash.pl: runners that die or stop in the middle of a task (README
# "How jobs run").
#
# (1) kill -9 of a runner inside a task (`insert ...; select pg_sleep(30)`):
#     PostgreSQL restarts every backend (crash recovery); afterwards the
#     insert is not there (no partial effects) and:
#       - a job of a workflow with the default on_stale (cancel) ends
#         'canceled' (it must not stay 'running');
#       - a job of a workflow with "on_stale": "retry" is run again and
#         succeeds (its task sleeps only on attempt 1), its effects there once;
#     and the runners come back (new processes).
# (2) A fast restart while task 2 of a 3-task chain runs: the runner hands
#     the job back (a 'requeued' run of task 2, no stale handling); after the
#     restart the job succeeds with exactly one succeeded run per task and
#     one side-effect row per task.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('crash', settings => { restart_after_crash => 'on' });

$node->q('CREATE TABLE public.fx (job_id bigint, what text, at timestamptz DEFAULT clock_timestamp())');
$node->q('CREATE TABLE public.flush (x int)');

ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '2', 60),
	'two runners are up');

###############################################################################
# (1) kill -9 of a runner in the middle of a task
###############################################################################

$node->create_workflow(q{{"name": "crash_cancel", "chain": [
  {"name": "slow", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'before sleep'); select pg_sleep(30)"}]}});
$node->create_workflow(q{{"name": "crash_retry", "on_stale": "retry", "chain": [
  {"name": "slow", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'attempt ' || ($1->'task'->>'attempt')); select pg_sleep(case when ($1->'task'->>'attempt')::int = 1 then 30 else 0 end); select 'done on attempt ' || ($1->'task'->>'attempt')"}]}});

my $jc = $node->q("SELECT workflow.create_job('crash_cancel')");
my $pid_c = $node->sleeping_runner($jc);
my $jr = $node->q("SELECT workflow.create_job('crash_retry')");
my $pid_r = $node->sleeping_runner($jr);
isnt($pid_c, $pid_r, "crash: the two jobs sleep in two runners ($pid_c, $pid_r)");
is($node->q("SELECT string_agg(execution::text, ',' ORDER BY id) FROM workflow.jobs WHERE id IN ($jc, $jr)"),
	'running,running', 'crash: both jobs are running');
my $pids_before = $node->runner_pids();

# the runners commit their claims asynchronously; a synchronous commit
# flushes the WAL so that the claims survive the crash (lost claims are
# test/t/270_claim_lost.pl's)
$node->q('INSERT INTO flush VALUES (1)');

my $offset = -s $node->logfile;
kill 'KILL', $pid_c;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
ok(1, "crash: runner $pid_c was killed and the server reinitialized");
ok($node->poll_for('SELECT 1', '1', 60), 'crash: the server accepts connections again');

is($node->q("SELECT count(*) FROM fx WHERE job_id = $jc"), '0',
	'crash: the insert of the killed task is not there');
is($node->q("SELECT count(*) FROM fx WHERE job_id = $jr AND what = 'attempt 1'"), '0',
	'crash: the insert of the other interrupted task is not there either');

# the runners come back as new processes
ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '2', 60),
	'crash: two runners are back');
my $pids_after = $node->runner_pids();
ok(!grep({ my $p = $_; grep { $_ eq $p } split /,/, $pids_before } split /,/, $pids_after),
	"crash: they are new processes ($pids_before -> $pids_after)");

# on_stale cancel: the job must not stay running; bounded wait (stale_after
# is 1s, the sweeper runs every 100ms)
my $t0 = time();
ok($node->poll_for("SELECT execution <> 'running' FROM workflow.jobs WHERE id = $jc", 't', 10),
	'crash, on_stale cancel: the job does not stay running');
note(sprintf('crash, on_stale cancel: %s after %.1fs',
	$node->q("SELECT execution || ' under ' || coalesce(runner_id, '-') FROM workflow.jobs WHERE id = $jc"), time() - $t0));
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $jc"), 'canceled',
	'crash, on_stale cancel: the job is canceled');
my $cerr = $node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $jc");
isnt($cerr, '', "crash, on_stale cancel: job.error says why ($cerr)");
is($node->q("SELECT count(*) FROM fx WHERE job_id = $jc"), '0',
	'crash, on_stale cancel: the task did not run again');

# on_stale retry: run again, succeeds on attempt 2
ok( $node->poll_for(
		"SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $jr", 't', 10),
	'crash, on_stale retry: the job finished');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $jr"), 'succeeded',
	'crash, on_stale retry: the job succeeded');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $jr"), '"done on attempt 2"',
	'crash, on_stale retry: it succeeded on task attempt 2');
is($node->q("SELECT string_agg(what, ',') FROM fx WHERE job_id = $jr"), 'attempt 2',
	'crash, on_stale retry: exactly the effects of the successful attempt are there');
is( $node->q(
		"SELECT string_agg(status || ':' || attempt, ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $jr"
	),
	'failed:1 succeeded:2',
	'crash, on_stale retry: task_runs has the stale attempt 1 and the successful attempt 2');

# the runners work after the crash
$node->create_workflow(q{{"name": "quick", "chain": [{"name": "q", "sql": "select 1"}]}});
my $after = $node->q(q{SELECT workflow.create_job('quick')});
ok($node->poll_for("SELECT execution = 'succeeded' FROM workflow.jobs WHERE id = $after", 't', 60),
	'crash: a new job runs after the crash');

###############################################################################
# (2) fast restart in the middle of a chain
###############################################################################

# t2 sleeps 5s unless it was handed back before
$node->create_workflow(q{{"name": "chain", "chain": [
  {"name": "t1", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 't1'); select 1"},
  {"name": "t2", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 't2'); select pg_sleep(case when exists (select 1 from workflow.task_runs r where r.job_id = ($1->'job'->>'id')::bigint and r.task = 't2') then 0 else 5 end); select 2"},
  {"name": "t3", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 't3'); select ($1->'results'->>'t1')::int + ($1->'results'->>'t2')::int"}]}});

my $jchain = $node->q("SELECT workflow.create_job('chain')");
my $pid = $node->sleeping_runner($jchain);
is($node->q("SELECT query FROM pg_stat_activity WHERE pid = $pid"), "workflow job $jchain: chain/t2",
	'restart: task t2 is running');
is($node->q("SELECT string_agg(what, ',') FROM fx WHERE job_id = $jchain"), 't1',
	'restart: t1 committed before');

$offset = -s $node->logfile;
$node->restart;    # pg_ctl restart: fast mode

# right after the restart, before anything ran again: the job was handed
# back, not left running under a runner that is gone
my $state = $node->q(
	"SELECT execution || '/' || coalesce(runner_id, '-') FROM workflow.jobs WHERE id = $jchain");
note("restart: right after the restart the job is $state");
is( $node->q(
		"SELECT string_agg(task || ':' || status, ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $jchain AND task <> 't3'"
	) =~ /^t1:succeeded t2:requeued/ ? 1 : 0,
	1,
	'restart: the graceful stop handed t2 back (a requeued run)');

ok( $node->poll_for(
		"SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $jchain", 't', 60),
	'restart: the job finished after the restart');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $jchain"), 'succeeded',
	'restart: the job succeeded');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $jchain"), '3',
	'restart: t3 saw the results of t1 and t2');
is( $node->q(
		"SELECT string_agg(task || '=' || n, ' ' ORDER BY task) FROM (SELECT task, count(*) n FROM workflow.task_runs WHERE job_id = $jchain AND status = 'succeeded' GROUP BY task) s"
	),
	't1=1 t2=1 t3=1',
	'restart: exactly one succeeded run per task');
is($node->q("SELECT string_agg(what, ',' ORDER BY at) FROM fx WHERE job_id = $jchain"),
	't1,t2,t3', 'restart: one side-effect row per task, none duplicated');
is( $node->q(
		"SELECT count(*) FROM workflow.task_runs WHERE job_id = $jchain AND (status IN ('failed', 'canceled') OR error ? 'stale')"
	),
	'0',
	'restart: no failed or stale run: the job was handed back, not swept');
is($node->q("SELECT attempt FROM workflow.task_runs WHERE job_id = $jchain AND task = 't2' AND status = 'succeeded'"),
	'1', 'restart: the hand-back did not count an attempt of t2');

my @bad = $node->log_lines(qr/\b(PANIC):|server process .* terminated|terminated by signal/, offset => $offset);
is_deeply(\@bad, [], 'server log since the restart: no PANIC or crashed backend');

$node->stop;

done_testing();
