# 065_crash_batch.pl: a crash in the middle of a runner's batch touches
# the job whose task was executing only (README "How jobs run", crash
# recovery; src/crashrecord.c).
#
# One runner claims ten jobs in one batch; the first (by priority) sleeps
# in its task, the nine others are claimed and have not started.  kill -9
# of the runner restarts the server; afterwards:
#   - the job that was executing gets a failed run that says the server
#     crashed, and its workflow's on_stale policy (cancel): canceled;
#   - the nine others are handed back, no attempt counted (a 'requeued' run
#     that says the runner stopped before the task started), run again, and
#     succeed with exactly one succeeded run and one effect each;
#   - no effect of the rolled-back batch is left.
# With on_stale "retry", the job that was executing runs again (task attempt
# 2) and succeeds.  A task that crashes the server at every run is run at
# most three times: the third crash fails it for good, and the job fails,
# with one failed run per crash.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('crash_batch',
	settings => { restart_after_crash => 'on', 'workflow.runners' => '1', 'workflow.batch_size' => '10' });

$node->q('CREATE TABLE public.fx (job_id bigint, attempt int)');
ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '1', 60),
	'one runner is up');

# the task records its effect, then sleeps when the job says so, on its
# first attempt only
my $task = q{insert into fx values (($1->'job'->>'id')::bigint, ($1->'task'->>'attempt')::int); select pg_sleep(case when ($1->'job'->'params'->>'slow')::boolean and ($1->'task'->>'attempt')::int = 1 then 60 else 0 end); select 'ok'};
$node->create_workflow(qq{{"name": "batchy", "chain": [{"name": "t", "sql": "$task"}]}});
$node->create_workflow(qq{{"name": "batchy_retry", "on_stale": "retry", "chain": [{"name": "t", "sql": "$task"}]}});
$node->create_workflow(q{{"name": "poison", "on_stale": "retry", "chain": [{"name": "t", "sql": "select pg_sleep(60)"}]}});

# crash at the first job of a batch of ten: the one executing is known
sub crash_batch
{
	my ($workflow) = @_;
	my ($slow, $rest) = $node->crash_batch_of_ten($workflow, flush => 1);
	is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id IN ($rest) AND status = 'requeued'
	               AND error->>'message' LIKE '%stopped before the task started'"),
		'9', "$workflow: each was handed back once (no attempt counted), with a requeued run saying so");
	is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id IN ($rest) AND status = 'failed'"),
		'0', "$workflow: none of them has a failed run");
	is($node->q("SELECT count(*), count(DISTINCT job_id) FROM fx WHERE job_id IN ($rest)"),
		'9|9', "$workflow: one effect per job: nothing of the rolled-back batch is left");
	return $slow;
}

my $slow = crash_batch('batchy');
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $slow", 'canceled', 60),
	'on_stale cancel: the job that was executing is canceled');
is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id = $slow AND status = 'failed'
               AND error->>'message' LIKE 'the server crashed while runner \"runner-1\" ran the task'
               AND (error->>'stale')::boolean"),
	'1', 'on_stale cancel: its interrupted attempt is a failed run that says the server crashed');
is($node->q("SELECT count(*) FROM fx WHERE job_id = $slow"), '0',
	'on_stale cancel: its effect was rolled back with the batch');

$slow = crash_batch('batchy_retry');
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $slow", 'succeeded', 60),
	'on_stale retry: the job that was executing runs again and succeeds');
is($node->q("SELECT string_agg(status || ':' || attempt, ',' ORDER BY id) FROM workflow.task_runs WHERE job_id = $slow"),
	'failed:1,succeeded:2', 'on_stale retry: a failed run of attempt 1, then attempt 2 succeeded');
is($node->q("SELECT string_agg(attempt::text, ',') FROM fx WHERE job_id = $slow"), '2',
	'on_stale retry: only the effect of attempt 2 is there');

# a task that crashes the server at each run
my $poison = $node->q("SELECT workflow.create_job('poison')");
$node->crash_in_task($poison, 'poison, first run', flush => 1);
$node->crash_in_task($poison, 'poison, second run', flush => 1);
$node->crash_in_task($poison, 'poison, third run', flush => 1);
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $poison", 'failed', 60),
	'poison: after the third crash the job fails (no crash loop)');
is($node->q("SELECT string_agg(status || ':' || attempt || ':' || (error->>'crashed'), ',' ORDER BY id)
               FROM workflow.task_runs WHERE job_id = $poison"),
	'failed:1:true,failed:2:true,failed:3:true', 'poison: one failed run per crash, each saying so');

$node->stop;
done_testing();
