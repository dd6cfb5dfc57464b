# 020_retries.pl: task retries, backoff, fallback, onerror, whole-job
# attempts, and the functions a task calls (README "How jobs run"), executed
# by the in-server runners.
#
#  (A) attempts 3, fixed backoff 200ms: fails twice (division by zero),
#      succeeds on attempt 3; task_runs: failed, failed, succeeded with the
#      sqlstate/message; the effects of the failed attempts are rolled back;
#      each retry starts at least 200ms after the failure (the task takes
#      100ms before failing, so a delay counted from the start of the
#      attempt instead of its failure shows).
#  (B) exponential and linear backoff: the delays grow (and max_delay caps).
#  (C) fallback: after the last failed attempt, the fallback's output is the
#      task's output, seen by the next task.
#  (D) no fallback: the onerror chain runs, then the job is failed with the
#      error of the original failure.
#  (E) max_attempts 2: the chain runs twice, then the job is failed.
#  (F) workflow.requeue('100ms') re-runs the task later, until a counter
#      reaches 3.
#  (G) workflow.wait() parks the job; resume_job(id, result) continues it
#      and the next task sees the result; resume_job(id, error => ...)
#      fails the task.
#  (H) a timer wait task ("wait": "1s") is ended by the sweeper.
#  (I) a "wait": "signal" task waits for resume_job.
#  (J) workflow.add_info() from a task shows in job_info.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('retries', settings => { 'workflow.runners' => 4 });

# the task runs of a job as "task:status:attempt[:fallback]" in order
my @run_fields = qw(task status attempt fallback);

# gaps in milliseconds between the end of each run of a task and the start
# of the next run of the same task (with $from = 'started_at': between the
# starts of the runs)
sub gaps
{
	my ($id, $task, $from) = @_;
	$from //= 'finished_at';
	my $r = $node->q(
		qq{SELECT string_agg(round(extract(epoch FROM gap) * 1000)::text, ',' ORDER BY id)
             FROM (SELECT id, started_at - lag($from) OVER (ORDER BY id) AS gap
                     FROM workflow.task_runs WHERE job_id = $id AND task = '$task') s
            WHERE gap IS NOT NULL});
	return split /,/, $r;
}

$node->safe_psql(
	'postgres', q{
CREATE TABLE public.attempts_log (job_id bigint, task text, attempt int, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE public.seen (job_id bigint, what text, value jsonb);
});

###############################################################################
# define everything, then create the jobs (after (A), all at once: they run
# in parallel)
###############################################################################

# (A) the task takes 100ms, then fails on attempts 1 and 2 (division by
# zero), succeeds on attempt 3; the insert before the failure must be rolled
# back with the failed attempt
$node->create_workflow(q{{"name": "fixed", "chain": [
  {"name": "flaky", "attempts": 3, "backoff": "fixed", "delay": "200ms",
   "sql": "insert into attempts_log (job_id, task, attempt) values (($1->'job'->>'id')::bigint, 'flaky', ($1->'task'->>'attempt')::int); select pg_sleep(0.1); select 100 / (($1->'task'->>'attempt')::int / 3)"}]}});

# (B) always failing tasks with growing delays
$node->create_workflow(q{{"name": "expo", "chain": [
  {"name": "e", "attempts": 4, "backoff": "exponential", "delay": "100ms",
   "sql": "select 1/0"}]}});
$node->create_workflow(q{{"name": "linear", "chain": [
  {"name": "l", "attempts": 4, "backoff": "linear", "delay": "150ms",
   "sql": "select 1/0"}]}});
$node->create_workflow(q{{"name": "capped", "chain": [
  {"name": "c", "attempts": 4, "backoff": "linear", "delay": "200ms", "max_delay": "250ms",
   "sql": "select 1/0"}]}});

# (C) fallback
$node->create_workflow(q{{"name": "fb", "chain": [
  {"name": "broken", "attempts": 2,
   "sql": "insert into attempts_log (job_id, task, attempt) values (($1->'job'->>'id')::bigint, 'broken', ($1->'task'->>'attempt')::int); select 1/0",
   "fallback": "insert into attempts_log (job_id, task, attempt) values (($1->'job'->>'id')::bigint, 'fallback', ($1->'task'->>'attempt')::int); select jsonb_build_object('from', 'fallback', 'attempt', $1->'task'->'attempt')"},
  {"name": "after", "sql": "select jsonb_build_object('saw', $1->'results'->'broken')"}]}});

# (D) onerror
$node->create_workflow(q{{"name": "onerr", "chain": [
  {"name": "ok1", "sql": "select 'fine'"},
  {"name": "bad", "sql": "select ('boom ' || ($1->'job'->>'id'))::int"},
  {"name": "never", "sql": "insert into seen values (($1->'job'->>'id')::bigint, 'never ran', null)"}],
  "onerror": [
  {"name": "cleanup", "sql": "insert into seen select ($1->'job'->>'id')::bigint, 'onerror', jsonb_build_object('context', $1, 'job_error', (select error from workflow.jobs where id = ($1->'job'->>'id')::bigint)); select 'cleaned'"}]}});

# (E) whole-job attempts
$node->create_workflow(q{{"name": "twice", "max_attempts": 2, "initial_delay": "100ms", "chain": [
  {"name": "first", "sql": "insert into attempts_log (job_id, task, attempt) values (($1->'job'->>'id')::bigint, 'first', ($1->'job'->>'attempt')::int); select $1->'job'->'attempt'"},
  {"name": "second", "sql": "select 1/0"}]}});

# (F) requeue until the counter reaches 3 (the rows of the re-queued runs
# are committed with them)
$node->create_workflow(q{{"name": "rq", "chain": [
  {"name": "poll",
   "sql": "insert into attempts_log (job_id, task, attempt) values (($1->'job'->>'id')::bigint, 'poll', ($1->'task'->>'attempt')::int); select workflow.requeue('100ms') from (select count(*) n from attempts_log where job_id = ($1->'job'->>'id')::bigint and task = 'poll') c where c.n < 3; select count(*) from attempts_log where job_id = ($1->'job'->>'id')::bigint and task = 'poll'"},
  {"name": "after", "sql": "select $1->'results'->'poll'"}]}});

# (G) workflow.wait()
$node->create_workflow(q{{"name": "parked", "chain": [
  {"name": "park", "sql": "select workflow.wait(); select 'parking'"},
  {"name": "next", "sql": "select jsonb_build_object('park', $1->'results'->'park')"}]}});

# (H) timer wait
$node->create_workflow(q{{"name": "timer", "chain": [
  {"name": "before", "sql": "select 1"},
  {"name": "pause", "wait": "1s"},
  {"name": "after", "sql": "select $1->'results'"}]}});

# (I) signal wait
$node->create_workflow(q{{"name": "signal", "chain": [
  {"name": "hold", "wait": "signal"},
  {"name": "after", "sql": "select $1->'results'->'hold'"}]}});

# (J) add_info
$node->create_workflow(q{{"name": "info", "chain": [
  {"name": "progress", "sql": "select workflow.add_info('{\"p\": 1}'); select workflow.add_info(jsonb_build_object('p', 2, 'task', $1->'task'->'name')); select 'done'"}]}});

# (A) alone first: its attempts take 100ms each, which would shift the
# timings of the backoff jobs if they shared a runner with it
my %job;
$job{fixed} = $node->create_job('fixed');
$node->wait_state($job{fixed});
$job{$_} = $node->create_job($_)
  for qw(expo linear capped fb onerr twice rq parked signal info);
my $parked_err = $node->create_job('parked');

###############################################################################
# (A) fixed backoff
###############################################################################

is($node->wait_state($job{fixed}), 'succeeded', 'fixed: the job succeeded on the third attempt');
is($node->runs($job{fixed}, @run_fields), 'flaky:failed:1 flaky:failed:2 flaky:succeeded:3',
	'fixed: task_runs shows failed, failed, succeeded');
is( $node->q(
		"SELECT string_agg(error->>'sqlstate' || '/' || (error->>'message'), ',' ORDER BY id) FROM workflow.task_runs WHERE job_id = $job{fixed} AND status = 'failed'"
	),
	'22012/division by zero,22012/division by zero',
	'fixed: the failed runs recorded sqlstate 22012 and the message');
is($node->q("SELECT output FROM workflow.task_runs WHERE job_id = $job{fixed} AND status = 'succeeded'"),
	'100', 'fixed: the output of the successful attempt');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $job{fixed}"),
	'100', 'fixed: job.result is the output');
is( $node->q(
		"SELECT string_agg(attempt::text, ',' ORDER BY at) FROM attempts_log WHERE job_id = $job{fixed} AND task = 'flaky'"
	),
	'3',
	'fixed: the effects of the failed attempts were rolled back, those of attempt 3 committed');
my @g = gaps($job{fixed}, 'flaky');
note("fixed 200ms backoff: gaps between failure and next attempt: @g ms");
my @s = gaps($job{fixed}, 'flaky', 'started_at');
note("fixed 200ms backoff: gaps between the starts of attempts: @s ms");
is(scalar(@g), 2, 'fixed: two gaps');
ok((grep { $_ >= 200 } @g) == 2,
	"fixed: each retry started at least 200ms after the failure (@g)");
ok((grep { $_ < 3000 } @g) == 2, "fixed: and not much later (@g)");

###############################################################################
# (B) exponential, linear, capped
###############################################################################

foreach my $case (
	[ 'expo', 'e', [ 100, 200, 400 ] ],
	[ 'linear', 'l', [ 150, 300, 450 ] ],
	[ 'capped', 'c', [ 200, 250, 250 ] ])
{
	my ($wf, $task, $want) = @$case;
	is($node->wait_state($job{$wf}), 'failed', "$wf: the always failing job failed");
	is($node->runs($job{$wf}, @run_fields), "$task:failed:1 $task:failed:2 $task:failed:3 $task:failed:4",
		"$wf: four failed attempts");
	# these tasks fail at once: measured between the starts of the attempts
	my @gap = gaps($job{$wf}, $task, 'started_at');
	note("$wf backoff: gaps @gap ms, expected at least @$want");
	is(scalar(@gap), 3, "$wf: three gaps");
	for my $i (0 .. 2)
	{
		# (10ms of slack: started_at is taken a moment after the start of
		# the transaction the delay is counted from)
		cmp_ok($gap[$i] // 0, '>=', $want->[$i] - 10,
			"$wf: retry " . ($i + 1) . " waited at least $want->[$i]ms");
	}
}
{
	my @e = gaps($job{expo}, 'e', 'started_at');
	ok($e[2] > $e[0] + 150, "expo: the delays grow (@e)");
	my @l = gaps($job{linear}, 'l', 'started_at');
	ok($l[2] > $l[0] + 150, "linear: the delays grow (@l)");
	my @c = gaps($job{capped}, 'c', 'started_at');
	cmp_ok($c[2], '<', 550, "capped: max_delay 250ms caps the third delay (@c; uncapped would be 600)");
}
is( $node->q("SELECT error->>'message' || '/' || (error->>'sqlstate') || '/' || (error->>'task') FROM workflow.jobs WHERE id = $job{expo}"),
	'division by zero/22012/e',
	'expo: job.error is the last failure');

###############################################################################
# (C) fallback
###############################################################################

is($node->wait_state($job{fb}), 'succeeded', 'fallback: the job succeeded thanks to the fallback');
is($node->runs($job{fb}, @run_fields), 'broken:failed:1 broken:failed:2 broken:succeeded:2:fallback after:succeeded:1',
	'fallback: two failed attempts, then the fallback succeeded, then the next task');
is( $node->q("SELECT output FROM workflow.task_runs WHERE job_id = $job{fb} AND task = 'broken' AND status = 'succeeded'"),
	'{"from": "fallback", "attempt": 2}',
	'fallback: the fallback output is the task output');
is( $node->q("SELECT result FROM workflow.jobs WHERE id = $job{fb}"),
	'{"saw": {"from": "fallback", "attempt": 2}}',
	'fallback: the next task saw the fallback output under results.broken');
is( $node->q("SELECT string_agg(task || attempt, ',' ORDER BY at) FROM attempts_log WHERE job_id = $job{fb}"),
	'fallback2',
	'fallback: only the fallback\'s effects committed');
is($node->q("SELECT error FROM workflow.jobs WHERE id = $job{fb}"),
	'', 'fallback: the succeeded job has no error');

###############################################################################
# (D) onerror
###############################################################################

is($node->wait_state($job{onerr}), 'failed', 'onerror: the job failed');
is($node->runs($job{onerr}, @run_fields), 'ok1:succeeded:1 bad:failed:1 cleanup:succeeded:1',
	'onerror: the chain stopped at the failing task and the onerror task ran');
is( $node->q("SELECT phase FROM workflow.task_runs WHERE job_id = $job{onerr} AND task = 'cleanup'"),
	'onerror', 'onerror: the cleanup run is in phase onerror');
is($node->q("SELECT count(*) FROM seen WHERE job_id = $job{onerr} AND what = 'onerror'"),
	'1', 'onerror: the onerror task ran exactly once');
is($node->q("SELECT count(*) FROM seen WHERE job_id = $job{onerr} AND what = 'never ran'"),
	'0', 'onerror: the chain tasks after the failure did not run');
is( $node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $job{onerr}"),
	"invalid input syntax for type integer: \"boom $job{onerr}\"",
	'onerror: job.error.message is the original failure');
is( $node->q("SELECT (error->>'sqlstate') || '/' || (error->>'task') FROM workflow.jobs WHERE id = $job{onerr}"),
	'22P02/bad', 'onerror: job.error has the sqlstate and the failing task');
is( $node->q("SELECT value->'context'->'task'->>'name' FROM seen WHERE job_id = $job{onerr} AND what = 'onerror'"),
	'cleanup', 'onerror: the onerror task got its own context');
my $seen_error = $node->q("SELECT value->'job_error'->>'message' FROM seen WHERE job_id = $job{onerr} AND what = 'onerror'");
is($seen_error, "invalid input syntax for type integer: \"boom $job{onerr}\"",
	'onerror: while the onerror task runs, the failure is in workflow.jobs.error');
note('onerror: the error is not part of the task context: '
	  . $node->q("SELECT value->'context' ? 'error' FROM seen WHERE job_id = $job{onerr} AND what = 'onerror'"));

###############################################################################
# (E) whole-job attempts
###############################################################################

is($node->wait_state($job{twice}), 'failed', 'max_attempts: the job failed in the end');
is( $node->q(
		"SELECT string_agg(job_attempt || ':' || task || ':' || status, ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $job{twice}"
	),
	'1:first:succeeded 1:second:failed 2:first:succeeded 2:second:failed',
	'max_attempts: the chain ran twice');
is($node->q("SELECT attempt FROM workflow.jobs WHERE id = $job{twice}"),
	'2', 'max_attempts: job.attempt is 2');
is( $node->q("SELECT string_agg(output::text, ',' ORDER BY id) FROM workflow.task_runs WHERE job_id = $job{twice} AND task = 'first'"),
	'1,2', 'max_attempts: the context job.attempt was 1, then 2');
is( $node->q("SELECT string_agg(attempt::text, ',' ORDER BY at) FROM attempts_log WHERE job_id = $job{twice}"),
	'1,2', 'max_attempts: the first task\'s effects committed in both attempts');
is($node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $job{twice}"),
	'division by zero', 'max_attempts: job.error is the failure');
cmp_ok(
	$node->q(
		"SELECT round(extract(epoch FROM (SELECT started_at FROM workflow.task_runs WHERE job_id = $job{twice} AND job_attempt = 2 AND task = 'first') - (SELECT started_at FROM workflow.task_runs WHERE job_id = $job{twice} AND job_attempt = 1 AND task = 'second')) * 1000)"
	),
	'>=', 90,
	'max_attempts: the second attempt started after initial_delay');

###############################################################################
# (F) requeue
###############################################################################

is($node->wait_state($job{rq}), 'succeeded', 'requeue: the job succeeded');
is($node->runs($job{rq}, @run_fields), 'poll:requeued:1 poll:requeued:1 poll:succeeded:1 after:succeeded:1',
	'requeue: the task was re-queued twice, then succeeded');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $job{rq}"),
	'3', 'requeue: the counter reached 3 and the next task saw it');
is($node->q("SELECT count(*) FROM attempts_log WHERE job_id = $job{rq}"),
	'3', 'requeue: the effects of every run committed (3 rows)');
# (measured between starts: the task is quick)
@g = gaps($job{rq}, 'poll', 'started_at');
ok(@g == 2 && (grep { $_ >= 90 } @g) == 2, "requeue: each re-run came at least 100ms later (@g)");

###############################################################################
# (G) workflow.wait() and resume_job
###############################################################################

is($node->wait_state($job{parked}, 'waiting'), 'waiting', 'wait(): the job is waiting');
is($node->wait_state($parked_err, 'waiting'), 'waiting', 'wait(): the second job is waiting too');
is($node->runs($job{parked}, @run_fields), 'park:waiting:1', 'wait(): task_runs has a waiting run');
is($node->q("SELECT output FROM workflow.task_runs WHERE job_id = $job{parked}"),
	'"parking"', 'wait(): the output of the parking run is recorded');
is($node->q(qq{SELECT workflow.resume_job($job{parked}, '{"ok": 1}')}),
	't', 'wait(): resume_job returns true');
is($node->wait_state($job{parked}), 'succeeded', 'wait(): the resumed job succeeded');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $job{parked}"),
	'{"park": {"ok": 1}}', 'wait(): the next task saw the resume result under results.park');
is($node->runs($job{parked}, @run_fields), 'park:waiting:1 park:succeeded:1 next:succeeded:1',
	'wait(): task_runs: waiting, then succeeded with the resume, then the next task');

my ($rc, $out, $err) = $node->psql('postgres', "SELECT workflow.resume_job($job{parked}, '{}')");
isnt($rc, 0, 'wait(): resume_job of a finished job is refused');

is($node->q("SELECT workflow.resume_job($parked_err, error => 'rejected by the operator')"),
	't', 'wait(): resume_job with an error returns true');
is($node->wait_state($parked_err), 'failed', 'wait(): resumed with an error, the job failed');
is($node->q("SELECT error->>'message' FROM workflow.jobs WHERE id = $parked_err"),
	'rejected by the operator', 'wait(): job.error is the error given to resume_job');

###############################################################################
# (H) timer wait
###############################################################################

# created now, so that its 1s timer is still running when we look
$job{timer} = $node->create_job('timer');
is($node->wait_state($job{timer}, 'waiting'), 'waiting', 'timer: the job waits on its timer');
is($node->wait_state($job{timer}), 'succeeded', 'timer: the sweeper ended the timer and the job succeeded');
is($node->runs($job{timer}, @run_fields), 'before:succeeded:1 pause:succeeded:1 after:succeeded:1',
	'timer: before, pause, after');
cmp_ok(
	$node->q(
		"SELECT round(extract(epoch FROM (SELECT started_at FROM workflow.task_runs WHERE job_id = $job{timer} AND task = 'after') - (SELECT finished_at FROM workflow.task_runs WHERE job_id = $job{timer} AND task = 'before')) * 1000)"
	),
	'>=', 1000,
	'timer: the next task started at least 1s after the previous one ended');
is($node->q("SELECT result->>'before' FROM workflow.jobs WHERE id = $job{timer}"),
	'1', 'timer: the task after the timer saw the results before it');

###############################################################################
# (I) signal wait
###############################################################################

is($node->wait_state($job{signal}, 'waiting'), 'waiting', 'signal: the job waits');
is($node->q("SELECT started_at IS NOT NULL FROM workflow.jobs WHERE id = $job{signal}"),
	't', 'signal: the job was started (claimed) before waiting');
is($node->q(qq{SELECT workflow.resume_job($job{signal}, '{"sig": 2}')}),
	't', 'signal: resume_job returns true');
is($node->wait_state($job{signal}), 'succeeded', 'signal: the job succeeded after resume_job');
is($node->q("SELECT result FROM workflow.jobs WHERE id = $job{signal}"),
	'{"sig": 2}', 'signal: the next task saw the resume result');

###############################################################################
# (J) add_info from a task
###############################################################################

is($node->wait_state($job{info}), 'succeeded', 'add_info: the job succeeded');
is( $node->q("SELECT string_agg(info::text, ' ; ' ORDER BY created_at) FROM workflow.job_info($job{info})"),
	'{"p": 1} ; {"p": 2, "task": "progress"}',
	'add_info: both infos are in job_info, in order');
($rc, $out, $err) = $node->psql('postgres', q{SELECT workflow.add_info('{"x": 1}'::jsonb)});
like($err, qr/can only be called from a task/, 'add_info(info) outside a task is refused');

# nothing went wrong in the server
my @bad = $node->log_lines(qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'server log: no PANIC, FATAL or crashed backend');

$node->stop;

done_testing();
