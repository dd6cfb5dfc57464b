# 140_runner_faults.pl: one fault touches one job; a role cannot hold,
# stall or read another role's work on a runner.
#
# One runner, so that jobs created in one transaction make one batch.
#
# (1) A fault of the runner's bookkeeping for one job (a trigger on
#     workflow.task_runs refuses the record of that job's requeue): that
#     job fails with the runner's error; the other jobs of its batch
#     succeed, their effects there once, with no other run.
# (2) requeue() of '296516 years 8 mons' and of '-1 s' fails the task
#     (22023, "requeue delay must be between 0 and 100 years"); the other
#     jobs of the batch succeed; requeue('100 years') is accepted.
# (3) With workflow.max_payload_size = 64kB: an output of 100 kB, and
#     three add_info() of 30 kB each (90 kB together), fail their task with
#     54000 "payload too large"; the jobs of the batch around them succeed.
# (4) A row lock held by an open transaction on a running job: the runner
#     does not wait for it (other jobs keep running), and the job is not
#     lost -- it succeeds once the lock is released, its effect there once.
# (4b) The transaction holding that lock cancels the job, and commits
#     while the runner waits for the row after the task's body: the runner
#     finds the job canceled in the version it locks (newer than the one it
#     read), so the task's effect is rolled back, and the batch around it is
#     not undone (no "could not record the outcome" error).
# (5) A task that catches query_canceled in a loop past its 300 ms timeout
#     (workflow.cancel_grace_period = 1s): the runner is replaced, the task
#     gets a failed attempt (57014, "did not stop within
#     workflow.cancel_grace_period"), and the jobs of its batch -- before it
#     (rolled back) and after it (never started) -- succeed without a
#     failed or canceled run, their effects there once.  cancel_job() of
#     such a task cancels the job and the runner comes back too.
# (6) setseed() in one role's task does not make random() predictable in
#     the next task, of another role, on the same runner.
# (7) An error of the batch as a whole (a deferred trigger fails the
#     commit) fails no job: they are handed back, retried at most about
#     once a second, and succeed once the trigger is gone.
# (8) pg_ctl stop -m fast while such a stubborn task runs (grace 2 s)
#     finishes within a few seconds; after the restart the stubborn job has
#     its failed attempt and the other job of its batch succeeds.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('faults',
	settings => {
		'workflow.runners' => 1,
		'workflow.cancel_grace_period' => '1s',
		'workflow.max_payload_size' => '64kB',
	});

# the pid of the (one) runner
sub runner_pid
{
	return $node->q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'workflow runner'");
}

# the jobs of a workflow that are not (yet) succeeded, and runs that are not succeeded
sub not_succeeded
{
	my ($workflow) = @_;
	return $node->q(
		"SELECT count(*) FROM workflow.jobs WHERE workflow = '$workflow' AND execution <> 'succeeded'")
	  . '/'
	  . $node->q(
		"SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
		  WHERE j.workflow = '$workflow' AND r.status <> 'succeeded'");
}

$node->create_role($_, 'workflow_user') for qw(alice mallory);
$node->q(q{
CREATE TABLE public.done (job bigint, task text, who text);
GRANT INSERT, SELECT ON public.done TO alice, mallory;
});

$node->create_workflow(q{
{"name": "work", "chain": [
  {"name": "a", "sql": "insert into public.done values (($1->'job'->>'id')::bigint, 'a', 'alice') returning 1"},
  {"name": "b", "sql": "insert into public.done values (($1->'job'->>'id')::bigint, 'b', 'alice') returning 2"}]}
}, set_role => 'alice');

# create $n jobs of alice's "work" around the SQL in $middle, in one transaction
sub batch_around
{
	my ($n, $middle) = @_;
	my $half = int($n / 2);
	return $node->q(qq{
BEGIN;
SET LOCAL ROLE alice;
SELECT count(workflow.create_job('work')) FROM generate_series(1, $half);
$middle;
SET LOCAL ROLE alice;
SELECT count(workflow.create_job('work')) FROM generate_series(1, $n - $half);
COMMIT;
});
}

sub all_work_done
{
	my ($what, $seconds) = @_;
	ok( $node->poll_for(
			q{SELECT count(*) = 0 FROM workflow.jobs WHERE workflow = 'work' AND execution <> 'succeeded'}, undef,
			$seconds // 60),
		"$what: every job of alice's succeeded");
	is( $node->q(
			q{SELECT count(*) FROM (SELECT job, task FROM public.done WHERE who = 'alice'
                                      GROUP BY 1, 2 HAVING count(*) > 1) d}),
		'0',
		"$what: each of her tasks' effects is there once");
	is( $node->q(
			q{SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
               WHERE j.workflow = 'work' AND r.status <> 'succeeded'}),
		'0',
		"$what: no run of hers other than a success");
}

# ---------------------------------------------------------------- (1)
$node->create_workflow(q{
{"name": "poison", "chain": [{"name": "poison", "sql": "select workflow.requeue('1 s')"}]}
}, set_role => 'mallory');
$node->q(q{
CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.task = 'poison' AND NEW.status = 'requeued' THEN
        RAISE EXCEPTION 'refusing the record of a poison run' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON workflow.task_runs
    FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();
});
batch_around(20, q{SET LOCAL ROLE mallory; SELECT workflow.create_job('poison')});
all_work_done('bookkeeping fault');
ok( $node->poll_for(q{SELECT execution = 'failed' FROM workflow.jobs WHERE workflow = 'poison'}, undef, 30),
	'bookkeeping fault: the job whose record failed is failed');
is( $node->q(
		q{SELECT r.error->>'sqlstate' || ' ' || (r.error->>'runner') || ' ' || (r.error->>'message')
            FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
           WHERE j.workflow = 'poison'}),
	'23514 true refusing the record of a poison run',
	'bookkeeping fault: with the runner\'s error, recorded for that job only');
$node->q('DROP TRIGGER refuse_poison ON workflow.task_runs');

# ---------------------------------------------------------------- (2)
$node->create_workflow(q{
{"name": "far", "chain": [{"name": "a", "sql": "select workflow.requeue('296516 years 8 mons')"}]}
}, set_role => 'mallory');
$node->create_workflow(q{
{"name": "back", "chain": [{"name": "a", "sql": "select workflow.requeue('-1 s')"}]}
}, set_role => 'mallory');
$node->create_workflow(q{
{"name": "century", "chain": [{"name": "a", "sql": "select workflow.requeue('100 years')"}]}
}, set_role => 'mallory');
batch_around(20,
	q{SET LOCAL ROLE mallory; SELECT workflow.create_job('far'), workflow.create_job('back'), workflow.create_job('century')});
all_work_done('requeue bounds');
ok( $node->poll_for(
		q{SELECT count(*) = 2 FROM workflow.jobs WHERE workflow IN ('far', 'back') AND execution = 'failed'}, undef,
		30),
	'requeue bounds: both out-of-range requeues failed their job');
is( $node->q(
		q{SELECT string_agg(DISTINCT (r.error->>'sqlstate') || ' ' || (r.error->>'message'), ',')
            FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
           WHERE j.workflow IN ('far', 'back')}),
	'22023 requeue delay must be between 0 and 100 years',
	'requeue bounds: 22023, requeue delay must be between 0 and 100 years');
ok( $node->poll_for(
		q{SELECT execution = 'queued' AND run_at > now() + interval '98 years'
            FROM workflow.jobs WHERE workflow = 'century'}, undef, 30),
	'requeue bounds: requeue(\'100 years\') is accepted');

# ---------------------------------------------------------------- (3)
$node->create_workflow(q{
{"name": "big_output", "chain": [{"name": "a", "sql": "select repeat('x', 100000)"}]}
}, set_role => 'mallory');
$node->create_workflow(q{
{"name": "big_info", "chain": [{"name": "a",
  "sql": "select count(workflow.add_info(jsonb_build_object('x', repeat('x', 30000)))) from generate_series(1, 3)"}]}
}, set_role => 'mallory');
batch_around(20,
	q{SET LOCAL ROLE mallory; SELECT workflow.create_job('big_output'), workflow.create_job('big_info')});
all_work_done('payload bounds');
ok( $node->poll_for(
		q{SELECT count(*) = 2 FROM workflow.jobs WHERE workflow IN ('big_output', 'big_info') AND execution = 'failed'}, undef,
		30),
	'payload bounds: the large output and the large info failed their job');
is( $node->q(
		q{SELECT string_agg((r.error->>'sqlstate') || ' ' || (r.error->>'message'), ',' ORDER BY j.workflow)
            FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
           WHERE j.workflow IN ('big_output', 'big_info')}),
	'54000 payload too large: info,54000 payload too large: output',
	'payload bounds: 54000, payload too large: info / output');

# ---------------------------------------------------------------- (4)
$node->create_workflow(q{
{"name": "slow", "chain": [
  {"name": "a", "sql": "select pg_sleep(2); insert into public.done values (($1->'job'->>'id')::bigint, 'a', 'mallory')"},
  {"name": "b", "sql": "select 1"}]}
}, set_role => 'mallory');
my $slow = $node->q(q{SET ROLE mallory; SELECT workflow.create_job('slow')});
$node->poll_for(
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND query LIKE 'workflow job $slow:%'", undef,
	30) or diag('the slow job did not start');
my $locker = $node->background_psql('postgres');
$locker->query_safe(
	"BEGIN; SELECT 1 FROM workflow.jobs WHERE id = $slow FOR NO KEY UPDATE");
batch_around(10, 'SELECT 1');
all_work_done('locked row', 30);
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $slow"),
	'running', 'locked row: the locked job is still claimed, not failed');
$locker->query_safe('COMMIT');
$locker->quit;
ok( $node->poll_for("SELECT execution = 'succeeded' FROM workflow.jobs WHERE id = $slow", undef, 30),
	'locked row: the job succeeds once the lock is released');
is($node->q("SELECT count(*) FROM public.done WHERE job = $slow"),
	'1', 'locked row: its effect is there once');
is( $node->q(
		"SELECT string_agg(task || ':' || status, ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $slow"
	),
	'a:succeeded b:succeeded',
	'locked row: no attempt was counted');

# ---------------------------------------------------------------- (4b)
$node->create_workflow(q{
{"name": "slow_cancel", "chain": [
  {"name": "a", "sql": "select pg_sleep(1); insert into public.done values (($1->'job'->>'id')::bigint, 'a', 'mallory')"}]}
}, set_role => 'mallory');
my $log_offset = -s $node->logfile;
my $canceled;
batch_around(10, q{SET LOCAL ROLE mallory; SELECT workflow.create_job('slow_cancel')});
$canceled = $node->q(q{SELECT id FROM workflow.jobs WHERE workflow = 'slow_cancel'});
$node->poll_for(
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND query LIKE 'workflow job $canceled:%'",
	undef, 30) or diag('the slow_cancel job did not start');
$locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT workflow.cancel_job($canceled)");
# the runner waits at most 200 ms for the row: commit as soon as it waits
# (both statements sent at once)
$locker->query_safe(q{
DO $$
BEGIN
    FOR i IN 1 .. 30000 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                           WHERE a.backend_type = 'workflow runner' AND NOT l.granted);
        PERFORM pg_sleep(0.001);
    END LOOP;
END $$;
COMMIT});
$locker->quit;
all_work_done('cancel under the lock', 30);
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $canceled"),
	'canceled', 'cancel under the lock: the job is canceled');
is($node->q("SELECT count(*) FROM public.done WHERE job = $canceled"),
	'0', 'cancel under the lock: the task\'s effect was rolled back');
unlike(
	slurp_file($node->logfile, $log_offset),
	qr/could not record the outcome/,
	'cancel under the lock: the batch around it was not undone');

# ---------------------------------------------------------------- (5)
$node->create_workflow(q{
{"name": "stubborn", "chain": [{"name": "a", "timeout": "300 ms",
  "sql": "do $d$ begin loop begin perform pg_sleep(0.05); exception when query_canceled then null; end; end loop; end $d$"}]}
}, set_role => 'mallory');
my $pid = runner_pid();
$node->q(q{
BEGIN;
SET LOCAL ROLE alice;
SELECT count(workflow.create_job('work')) FROM generate_series(1, 5);
SET LOCAL ROLE mallory;
SELECT workflow.create_job('stubborn');
SET LOCAL ROLE alice;
SELECT count(workflow.create_job('work')) FROM generate_series(1, 5);
COMMIT;
});
my $t0 = time;
ok( $node->poll_for(q{SELECT execution = 'failed' FROM workflow.jobs WHERE workflow = 'stubborn'}, undef, 30),
	'stubborn task: its job ends failed');
cmp_ok(time - $t0, '<', 20, 'stubborn task: within seconds, not forever');
is( $node->q(
		q{SELECT (r.error->>'sqlstate') || ' ' || (r.error->>'message')
            FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
           WHERE j.workflow = 'stubborn'}),
	'57014 task did not stop within workflow.cancel_grace_period after it was canceled',
	'stubborn task: a failed attempt, 57014');
all_work_done('stubborn task');
ok($node->poll_for("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND pid <> $pid", undef, 30),
	'stubborn task: a new runner took over');

# cancel_job of a stubborn task
$node->create_workflow(q{
{"name": "stubborn2", "chain": [{"name": "a",
  "sql": "do $d$ begin loop begin perform pg_sleep(0.05); exception when query_canceled then null; end; end loop; end $d$"}]}
}, set_role => 'mallory');
$pid = runner_pid();
my $stub = $node->q(q{SET ROLE mallory; SELECT workflow.create_job('stubborn2')});
$node->poll_for(
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND query LIKE 'workflow job $stub:%'", undef,
	30) or diag('the stubborn job did not start');
is($node->q("SET ROLE mallory; SELECT workflow.cancel_job($stub)"), 't', 'cancel_job of a stubborn task');
ok($node->poll_for("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND pid <> $pid", undef, 30),
	'cancel_job of a stubborn task: the runner is replaced');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $stub"), 'canceled', '... and the job is canceled');
batch_around(4, 'SELECT 1');
all_work_done('after a canceled stubborn task');

# ---------------------------------------------------------------- (6)
$node->create_workflow(q{{"name": "seed", "chain": [{"name": "a", "sql": "select setseed(0.5)"}]}}, set_role => 'mallory');
$node->create_workflow(q{{"name": "dice", "chain": [{"name": "a", "sql": "select random()::text"}]}}, set_role => 'alice');
$node->q(q{
BEGIN;
SET LOCAL ROLE mallory;
SELECT workflow.create_job('seed');
SET LOCAL ROLE alice;
SELECT workflow.create_job('dice');
COMMIT;
});
ok($node->poll_for(q{SELECT execution = 'succeeded' FROM workflow.jobs WHERE workflow = 'dice'}, undef, 30),
	'setseed: the dice job ran');
my $predicted = $node->q(q{SELECT setseed(0.5); SELECT random()::text});
$predicted =~ s/.*\n//s;
my $rolled = $node->q(q{SELECT result #>> '{}' FROM workflow.jobs WHERE workflow = 'dice'});
ok($rolled =~ /^0\.\d+/ && $rolled ne $predicted,
	'setseed: random() in the next role\'s task is not the seeded sequence');

# ---------------------------------------------------------------- (7)
$node->create_workflow(q{
{"name": "commitfail", "chain": [{"name": "a", "sql": "select nextval('public.commitfail_runs')"}]}
}, set_role => 'alice');
$node->q(q{
CREATE SEQUENCE public.commitfail_runs;
GRANT USAGE ON SEQUENCE public.commitfail_runs TO alice;
CREATE FUNCTION public.fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.task = 'a' AND NEW.status = 'succeeded' AND NEW.output IS NOT NULL
       AND jsonb_typeof(NEW.output) = 'number' AND NEW.phase = 'chain'
       AND EXISTS (SELECT 1 FROM workflow.jobs WHERE id = NEW.job_id AND workflow = 'commitfail') THEN
        RAISE EXCEPTION 'the commit of this batch fails';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT ON workflow.task_runs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.fail_commit();
});
batch_around(10, q{SET LOCAL ROLE alice; SELECT workflow.create_job('commitfail')});
ok($node->poll_for(q{SELECT last_value >= 3 FROM public.commitfail_runs}, undef, 30),
	'batch-wide fault: the batch was tried again');
my $r0 = $node->q(q{SELECT last_value FROM public.commitfail_runs});
my $s0 = time;
$node->poll_for(qq{SELECT clock_timestamp() > to_timestamp($s0) + interval '3 s'}, undef, 30);
my $r1 = $node->q(q{SELECT last_value FROM public.commitfail_runs});
cmp_ok($r1 - $r0, '<=', 8, 'batch-wide fault: not retried in a hot loop');
is( $node->q(
		q{SELECT count(*) FROM workflow.jobs
           WHERE workflow IN ('work', 'commitfail') AND execution IN ('failed', 'canceled')}),
	'0',
	'batch-wide fault: no job of the batch failed');
$node->q('DROP TRIGGER fail_commit ON workflow.task_runs');
all_work_done('batch-wide fault');
ok($node->poll_for(q{SELECT execution = 'succeeded' FROM workflow.jobs WHERE workflow = 'commitfail'}, undef, 30),
	'batch-wide fault: the job succeeds once the commit can');

# ---------------------------------------------------------------- (8)
$node->append_conf('postgresql.conf', "workflow.cancel_grace_period = '2s'");
$node->reload;
$node->create_workflow(q{
{"name": "stubborn3", "chain": [{"name": "a",
  "sql": "do $d$ begin loop begin perform pg_sleep(0.05); exception when query_canceled then null; end; end loop; end $d$"}]}
}, set_role => 'mallory');
$node->q(q{
BEGIN;
SET LOCAL ROLE mallory;
SELECT workflow.create_job('stubborn3');
SET LOCAL ROLE alice;
SELECT workflow.create_job('work');
COMMIT;
});
my $stub3 = $node->q(q{SELECT id FROM workflow.jobs WHERE workflow = 'stubborn3'});
$node->poll_for(
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND query LIKE 'workflow job $stub3:%'", undef,
	30) or diag('the stubborn job did not start');
$t0 = time;
$node->stop('fast');
cmp_ok(time - $t0, '<', 10, 'fast stop with a stubborn task finishes within the grace period and a little');
$node->start;
ok( $node->poll_for(
		"SELECT execution = 'failed' FROM workflow.jobs WHERE id = $stub3", undef, 30),
	'fast stop: the stubborn job has its failed attempt');
is( $node->q(
		"SELECT r.error->>'message' FROM workflow.task_runs r WHERE r.job_id = $stub3"),
	'task did not stop within workflow.cancel_grace_period after it was canceled',
	'fast stop: recorded as a task that did not stop');
all_work_done('fast stop');

$node->stop('fast');
done_testing();
