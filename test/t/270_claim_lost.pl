# 270_claim_lost.pl: a runner's claim is committed without waiting for its
# WAL flush, so a crash of the server can lose it; the crash record written
# before the task started still settles the job whose task was executing
# (README "How jobs run", crash recovery; src/crashrecord.c).
#
# Nothing flushes the WAL between the claim and the crash here: the WAL
# writer waits 10 s, the sweeper writes its heartbeats every 10 s,
# autovacuum and the background writer are off, and the test itself only
# reads.  After kill -9 of the runner:
#   - the job that was executing, found queued again (its claim lost),
#     gets a failed run that says the server crashed and that the claim was
#     lost, and its workflow's on_stale policy: canceled, or run again;
#   - the other jobs of the lost claim are simply queued: they run at their
#     first attempt, with no run of the crash at all;
#   - a task that crashes the server at every run, its claim lost every
#     time, is run at most three times: runners do not claim a job whose
#     crash the sweeper has not settled yet, so each crash is counted.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create(
	'claim_lost',
	settings => {
		restart_after_crash => 'on',
		'workflow.runners' => '1',
		'workflow.batch_size' => '10',
		'workflow.activity_interval' => '10s',
		wal_writer_delay => '10s',
		autovacuum => 'off',
		bgwriter_lru_maxpages => '0',
	});

$node->q('CREATE TABLE public.fx (job_id bigint, attempt int)');
ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '1', 60),
	'one runner is up');

# the task records its effect, then sleeps when the job says so, on its
# first attempt only
my $task = q{insert into fx values (($1->'job'->>'id')::bigint, ($1->'task'->>'attempt')::int); select pg_sleep(case when ($1->'job'->'params'->>'slow')::boolean and ($1->'task'->>'attempt')::int = 1 then 60 else 0 end); select 'ok'};
$node->create_workflow(qq{{"name": "lost", "chain": [{"name": "t", "sql": "$task"}]}});
$node->create_workflow(qq{{"name": "lost_retry", "on_stale": "retry", "chain": [{"name": "t", "sql": "$task"}]}});
$node->create_workflow(q{{"name": "poison", "on_stale": "retry", "chain": [{"name": "t", "sql": "select pg_sleep(60)"}]}});

# ten jobs in one claim, the first (by priority) sleeping in its task
sub crash_claim
{
	my ($workflow) = @_;
	my ($slow, $rest) = $node->crash_batch_of_ten($workflow);
	is($node->q("SELECT count(*) FROM workflow.task_runs WHERE job_id IN ($rest) AND status <> 'succeeded'"),
		'0', "$workflow: none of them has a run of the crash: their claim was lost, not handed back");
	is($node->q("SELECT count(*), count(DISTINCT job_id) FROM fx WHERE job_id IN ($rest)"),
		'9|9', "$workflow: one effect per job: nothing of the rolled-back batch is left");
	return $slow;
}

my $slow = crash_claim('lost');
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $slow", 'canceled', 60),
	'on_stale cancel: the job that was executing is canceled');
is($node->q("SELECT string_agg(concat_ws(':', status, attempt, runner_id, lease IS NOT NULL,
                                        error->>'crashed', error->>'claim_lost'), ',' ORDER BY id)
               FROM workflow.task_runs WHERE job_id = $slow
                AND error->>'message' = 'the server crashed while runner \"runner-1\" ran the task'"),
	'failed:1:runner-1:t:true:true',
	'on_stale cancel: its interrupted attempt is a failed run of its runner and lease that says the claim was lost');
is($node->q("SELECT count(*) FROM fx WHERE job_id = $slow"), '0',
	'on_stale cancel: its effect was rolled back with the batch');

$slow = crash_claim('lost_retry');
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $slow", 'succeeded', 60),
	'on_stale retry: the job that was executing runs again and succeeds');
is($node->q("SELECT string_agg(concat_ws(':', status, attempt, error->>'claim_lost'), ',' ORDER BY id)
               FROM workflow.task_runs WHERE job_id = $slow"),
	'failed:1:true,succeeded:2', 'on_stale retry: a failed run of attempt 1 (claim lost), then attempt 2 succeeded');
is($node->q("SELECT string_agg(attempt::text, ',') FROM fx WHERE job_id = $slow"), '2',
	'on_stale retry: only the effect of attempt 2 is there');

# the hold: while the sweeper cannot settle a crash record (here a trigger
# refuses the failed run it records), the runner claims the jobs behind
# the held job but not the held job itself
$node->q(q{CREATE TABLE public.refuse_crash_runs (x int);
INSERT INTO public.refuse_crash_runs VALUES (1);
CREATE FUNCTION public.refuse_crash_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.error->>'crashed')::boolean AND EXISTS (SELECT 1 FROM public.refuse_crash_runs) THEN
        RAISE EXCEPTION 'crash runs refused by the test';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_crash_run BEFORE INSERT ON workflow.task_runs
    FOR EACH ROW EXECUTE FUNCTION public.refuse_crash_run()});
my $held = $node->q("SELECT workflow.create_job('lost', '{\"slow\": true}', priority => 1)");
my $offset = -s $node->logfile;
$node->crash_in_task($held, 'hold');
$node->wait_for_log(qr/workflow sweeper could not settle the crash of job $held/, $offset);
my $behind = $node->q("SELECT workflow.create_job('lost')");
is($node->wait_state($behind), 'succeeded', 'hold: a job created after the crash runs');
is($node->q("SELECT execution || ':' || (id = ANY (workflow._crash_held())) FROM workflow.jobs WHERE id = $held"),
	'queued:true', 'hold: the job of the unsettled record, first in claim order, stays queued');
$node->q('DELETE FROM public.refuse_crash_runs');
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $held", 'canceled', 120),
	'hold: settled at a later pass, the job gets its on_stale policy');
is($node->runs($held, 'status', 'attempt'), 'failed:1', 'hold: one failed run, of the crash; the task never ran again');

# a task that crashes the server at each run, each claim lost
my $poison = $node->q("SELECT workflow.create_job('poison')");
$node->crash_in_task($poison, 'poison, first run');
$node->crash_in_task($poison, 'poison, second run');
$node->crash_in_task($poison, 'poison, third run');
ok($node->poll_for("SELECT execution FROM workflow.jobs WHERE id = $poison", 'failed', 60),
	'poison: after the third crash the job fails (no crash loop)');
is($node->q("SELECT string_agg(concat_ws(':', status, attempt, error->>'crashed', error->>'claim_lost'), ',' ORDER BY id)
               FROM workflow.task_runs WHERE job_id = $poison"),
	'failed:1:true:true,failed:2:true:true,failed:3:true:true',
	'poison: one failed run per crash, each saying its claim was lost');
is($node->q('SELECT cardinality(workflow._crash_held())'), '0', 'every crash record is settled');

$node->stop;
done_testing();
