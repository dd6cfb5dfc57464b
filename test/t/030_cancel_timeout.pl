# 030_cancel_timeout.pl: SQL tasks are really stopped (README "How jobs
# run"): per-task timeouts, whole-job timeouts and cancel_job of a running job.
#
# (1) A task with "timeout": "300ms" running pg_sleep(30) fails with
#     SQLSTATE 57014 within a few seconds; the runner that ran it is not in
#     pg_sleep any more (it was cancelled, not left sleeping) and is the same
#     process (not killed).
# (2) A whole-job timeout of 1s on a job whose task sleeps 30s: the job ends
#     failed with error.message 'job timed out'; with an onerror chain, the
#     onerror task runs first.
# (3) cancel_job on a running job whose task did `insert ...; select
#     pg_sleep(30)`: returns true, the job is canceled quickly, the runner
#     backend leaves pg_sleep, and the insert is rolled back; a second
#     cancel_job returns false.
# (4) With an oncancel chain, it runs on cancel and the job ends canceled.
# (5) cancel_job of a queued and of a waiting job.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('cancel', settings => { 'workflow.runners' => 4 });

# the task runs of a job as "phase:task:status" in order
my @run_fields = qw(phase task status);

$node->safe_psql('postgres', q{
CREATE TABLE public.fx (job_id bigint, what text, at timestamptz DEFAULT clock_timestamp());
});

# the runners are up
$node->poll_query_until('postgres',
	"SELECT count(*) = 4 FROM pg_stat_activity WHERE backend_type = 'workflow runner'")
  or diag('runners did not start');
my $pids_before = $node->runner_pids();

$node->create_workflow(q{{"name": "task_timeout", "chain": [
  {"name": "slow", "timeout": "300ms",
   "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'slow'); select pg_sleep(30)"}]}});
$node->create_workflow(q{{"name": "job_timeout", "timeout": "1s", "chain": [
  {"name": "slow", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'slow'); select pg_sleep(30)"},
  {"name": "never", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'never')"}]}});
$node->create_workflow(q{{"name": "job_timeout_onerror", "timeout": "1s", "chain": [
  {"name": "slow", "sql": "select pg_sleep(30)"}],
  "onerror": [
  {"name": "cleanup", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'onerror'); select 'cleaned up'"}]}});
$node->create_workflow(q{{"name": "cancel_me", "chain": [
  {"name": "slow", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'before sleep'); select pg_sleep(30)"},
  {"name": "never", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'never')"}]}});
$node->create_workflow(q{{"name": "cancel_oncancel", "chain": [
  {"name": "slow", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'before sleep'); select pg_sleep(30)"}],
  "oncancel": [
  {"name": "undo", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'oncancel:' || ($1->'task'->>'name')); select 'undone'"}]}});
$node->create_workflow(q{{"name": "parked", "chain": [
  {"name": "hold", "wait": "signal"}],
  "oncancel": [
  {"name": "undo", "sql": "insert into fx (job_id, what) values (($1->'job'->>'id')::bigint, 'oncancel of waiting')"}]}});

###############################################################################
# (1) task timeout and (2) job timeout, in parallel
###############################################################################

my $t0 = time();
my $tto = $node->q("SELECT workflow.create_job('task_timeout')");
my $jto = $node->q("SELECT workflow.create_job('job_timeout')");
my $jto2 = $node->q("SELECT workflow.create_job('job_timeout_onerror')");

is($node->wait_state($tto), 'failed', 'task timeout: the job failed');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 10, sprintf('task timeout: the job failed within a few seconds (%.2fs), not after the 30s sleep', $elapsed));
is( $node->q("SELECT error->>'sqlstate' FROM workflow.task_runs WHERE job_id = $tto"),
	'57014', 'task timeout: the task run failed with SQLSTATE 57014');
is($node->q("SELECT error->>'sqlstate' FROM workflow.jobs WHERE id = $tto"),
	'57014', 'task timeout: job.error has SQLSTATE 57014');
my $dur = $node->q(
	"SELECT round(extract(epoch FROM finished_at - started_at) * 1000) FROM workflow.task_runs WHERE job_id = $tto");
note("task timeout: the attempt lasted $dur ms");
ok($dur >= 290 && $dur < 5000, "task timeout: the attempt lasted about 300ms ($dur ms)");
is($node->q("SELECT count(*) FROM fx WHERE job_id = $tto"),
	'0', 'task timeout: the effects of the timed-out task were rolled back');
# the job ran for at least the 300ms of its task: its finished_at is when it
# failed, not when the transaction of its last task began
my $job_ms = $node->q("SELECT round(extract(epoch FROM finished_at - started_at) * 1000) FROM workflow.jobs WHERE id = $tto");
cmp_ok($job_ms, '>=', 290, "task timeout: job finished_at - started_at covers the 300ms task ($job_ms ms)");

is($node->wait_state($jto), 'failed', 'job timeout: the job failed');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 10, sprintf('job timeout: within a few seconds (%.2fs)', $elapsed));
is($node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $jto"),
	'job timed out', "job timeout: job.error.message is 'job timed out'");
is($node->q("SELECT error->>'sqlstate' FROM workflow.jobs WHERE id = $jto"),
	'57014', 'job timeout: job.error.sqlstate is 57014');
is($node->runs($jto, @run_fields), 'chain:slow:failed', 'job timeout: one failed run of the sleeping task, the next task never ran');
is($node->q("SELECT count(*) FROM fx WHERE job_id = $jto"),
	'0', 'job timeout: the effects of the interrupted task were rolled back');

is($node->wait_state($jto2), 'failed', 'job timeout with onerror: the job failed');
is($node->runs($jto2, @run_fields), 'chain:slow:failed onerror:cleanup:succeeded',
	'job timeout with onerror: the onerror task ran after the timeout');
is($node->q("SELECT string_agg(what, ',') FROM fx WHERE job_id = $jto2"),
	'onerror', 'job timeout with onerror: the onerror task\'s effects committed');
is($node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $jto2"),
	'job timed out', "job timeout with onerror: job.error.message is 'job timed out'");

# every runner is back out of pg_sleep, and they are the same processes
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND wait_event = 'PgSleep'"),
	'timeouts: no runner is still sleeping in a timed-out task');
is($node->runner_pids(), $pids_before, 'timeouts: the runners were cancelled, not restarted');

###############################################################################
# (3) cancel_job of a running job
###############################################################################

my $cx = $node->q("SELECT workflow.create_job('cancel_me')");
my $pid = $node->sleeping_runner($cx);
like($pid, qr/^\d+$/, "cancel: the task runs in runner $pid, inside pg_sleep");
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $cx"), 'running', 'cancel: the job is running');
$t0 = time();
is($node->q("SELECT workflow.cancel_job($cx, 'changed my mind')"), 't', 'cancel: cancel_job returns true');
is($node->wait_state($cx), 'canceled', 'cancel: the job is canceled');
ok($node->left_sleep($pid), 'cancel: the runner backend left pg_sleep');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 10, sprintf('cancel: the runner stopped the task quickly (%.2fs)', $elapsed));
is($node->q("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid"),
	'1', 'cancel: the runner process is still there (cancelled, not killed)');
is($node->q("SELECT count(*) FROM fx WHERE job_id = $cx"),
	'0', 'cancel: the insert made before the sleep was rolled back');
is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id = $cx AND status = 'succeeded'"),
	'0', 'cancel: no task run succeeded');
is( $node->q("SELECT (error->>'message') || '/' || (error->>'reason') FROM workflow.jobs WHERE id = $cx"),
	'job canceled/changed my mind', 'cancel: job.error has the message and the reason');
is($node->q("SELECT finished_at IS NOT NULL FROM workflow.jobs WHERE id = $cx"),
	't', 'cancel: the job has finished_at');
is($node->q("SELECT workflow.cancel_job($cx)"), 'f', 'cancel: a second cancel_job returns false');

# the same runner takes work again
my $after = $node->q("SELECT workflow.create_job('task_timeout')");
is($node->wait_state($after), 'failed', 'cancel: the runners still run jobs afterwards');

###############################################################################
# (4) oncancel
###############################################################################

my $cxo = $node->q("SELECT workflow.create_job('cancel_oncancel')");
$pid = $node->sleeping_runner($cxo);
is($node->q("SELECT workflow.cancel_job($cxo)"), 't', 'oncancel: cancel_job returns true');
is($node->wait_state($cxo), 'canceled', 'oncancel: the job ends canceled');
ok($node->left_sleep($pid), 'oncancel: the runner backend left pg_sleep');
is($node->q("SELECT string_agg(what, ',') FROM fx WHERE job_id = $cxo"),
	'oncancel:undo', 'oncancel: the oncancel task ran (and the chain task\'s insert was rolled back)');
is($node->runs($cxo, @run_fields), 'chain:slow:canceled oncancel:undo:succeeded',
	'oncancel: task_runs has the canceled attempt of the running task, then the oncancel run');
is($node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $cxo"),
	'job canceled', 'oncancel: job.error says canceled');

###############################################################################
# (5) cancel a queued and a waiting job
###############################################################################

my $later = $node->q("SELECT workflow.create_job('cancel_me', run_at => now() + interval '1 hour')");
is($node->q("SELECT workflow.cancel_job($later)"), 't', 'queued: cancel_job returns true');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $later"), 'canceled', 'queued: canceled at once');
is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id = $later"), '0', 'queued: nothing ran');

my $w = $node->q("SELECT workflow.create_job('parked')");
is($node->wait_state($w, 'waiting'), 'waiting', 'waiting: the job waits');
is($node->q("SELECT workflow.cancel_job($w)"), 't', 'waiting: cancel_job returns true');
is($node->wait_state($w), 'canceled', 'waiting: the job is canceled');
is($node->q("SELECT string_agg(what, ',') FROM fx WHERE job_id = $w"),
	'oncancel of waiting', 'waiting: its oncancel task ran');

my @bad = $node->log_lines(qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'server log: no PANIC, FATAL or crashed backend');

$node->stop;

done_testing();
