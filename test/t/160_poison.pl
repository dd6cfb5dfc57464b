# 160_poison.pl: one role's poisoned jobs leave every other role's jobs, and
# the sweeper, working.
#
# Role mallory creates, in the same transaction as role alice's ordinary
# jobs (so that the runners' batches mix them):
#   - a task that requeues itself by 296516 years (an overflow once),
#   - a task that adds 1 MB of info 1,100 times (an array over 1 GB once),
#   - a task that catches query_canceled in a loop past its timeout (it
#     held a runner forever once),
#   - 70 external tasks that a worker polls and sits on past their job's
#     timeout (more than 64 stopped every sweeper pass once),
#   - and keeps a transaction open that locked one of her running jobs.
# Then every one of alice's jobs succeeds, her wait timer ends, the
# sweeper times out all 70 external jobs, and a workflow with a timeout of
# a million years is refused at definition time.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('poison',
	settings => { 'workflow.cancel_grace_period' => '1s' });

$node->create_role($_, 'workflow_user') for qw(alice mallory);
$node->create_role('worker', 'workflow_worker');
$node->q(q{
CREATE TABLE public.done (job bigint PRIMARY KEY, who text NOT NULL);
GRANT INSERT, SELECT ON public.done TO alice, mallory;
});

# a definition's interval is bounded: nothing can overflow a deadline
my ($rc, $out, $err) = $node->psql('postgres', q{
SET ROLE mallory;
SELECT workflow.create_workflow('{"name": "m_forever", "timeout": "1000000 years",
                                  "chain": [{"name": "a", "sql": "select 1"}]}')});
isnt($rc, 0, 'a timeout of a million years is refused');
like($err, qr/out of range.*at most 100 years/, '... as out of range');

$node->q(q{
SET ROLE alice;
SELECT workflow.create_workflow($$
  {"name": "a_work", "chain": [{"name": "a", "sql": "insert into public.done values (($1->'job'->>'id')::bigint, 'alice') returning 1"},
                               {"name": "b", "sql": "select 2"}]}$$);
SELECT workflow.create_workflow('{"name": "a_timer", "chain": [{"name": "w", "wait": "1 s"}, {"name": "b", "sql": "select 3"}]}');
SET ROLE mallory;
SELECT workflow.create_workflow($$
  {"name": "m_requeue", "chain": [{"name": "a", "sql": "select workflow.requeue('296516 years 8 mons')"}]}$$);
SELECT workflow.create_workflow($$
  {"name": "m_info", "chain": [{"name": "a", "sql": "select count(workflow.add_info(jsonb_build_object('x', repeat('x', 1000000)))) from generate_series(1, 1100)"}]}$$);
SELECT workflow.create_workflow($$
  {"name": "m_stubborn", "chain": [{"name": "a", "timeout": "300 ms",
   "sql": "do $d$ begin loop begin perform pg_sleep(0.05); exception when query_canceled then null; end; end loop; end $d$"}]}$$);
SELECT workflow.create_workflow('{"name": "m_ext", "timeout": "2 s", "chain": [{"name": "x", "task_type": "m.type"}]}');
SELECT workflow.create_workflow($$
  {"name": "m_slow", "on_stale": "retry",
   "chain": [{"name": "a", "sql": "select pg_sleep(2)"}, {"name": "b", "sql": "select 1"}]}$$);
});

# mallory's external tasks first, polled by a worker that never reports
$node->q(q{
SET ROLE mallory;
SELECT workflow.create_job('m_ext', jsonb_build_object('n', n)) FROM generate_series(1, 70) n;
});
is( $node->safe_psql(
		'postgres',
		q{SET ROLE worker; SELECT count(*) FROM workflow.poll_tasks('m.type', 'lazy-worker', 100)}),
	'70',
	'the worker holds 70 external tasks');

# one of mallory's jobs is held running by a slow task; she locks its row
# in a transaction she keeps open: a cancel_job she has not committed.  (If
# the runner that holds it back exits meanwhile -- one of the stubborn
# tasks above may make it -- the job is stale and on_stale decides: retry.)
my $slow = $node->q(q{SET ROLE mallory; SELECT workflow.create_job('m_slow')});
$node->poll_query_until('postgres',
	"SELECT execution = 'running' FROM workflow.jobs WHERE id = $slow")
  or diag('the slow job did not start');
my $locker = $node->background_psql('postgres');
$locker->query_safe('SET ROLE mallory');
$locker->query_safe('BEGIN');
is($locker->query_safe("SELECT workflow.cancel_job($slow)"), 't',
	'mallory keeps a transaction open that locked her running job');

# the poisoned jobs, interleaved with alice's ordinary ones in one commit
$node->q(q{
BEGIN;
SET LOCAL ROLE mallory;
SELECT workflow.create_job('m_requeue');
SELECT workflow.create_job('m_info');
SELECT workflow.create_job('m_stubborn');
SET LOCAL ROLE alice;
SELECT workflow.create_job('a_work', jsonb_build_object('n', n)) FROM generate_series(1, 100) n;
SELECT workflow.create_job('a_timer');
SET LOCAL ROLE mallory;
SELECT workflow.create_job('m_stubborn');
SELECT workflow.create_job('m_requeue');
SET LOCAL ROLE alice;
SELECT workflow.create_job('a_work', jsonb_build_object('n', n)) FROM generate_series(101, 200) n;
COMMIT;
});

ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 201 FROM workflow.jobs
           WHERE created_by = 'alice'::regrole AND execution = 'succeeded'}),
	'every one of alice\'s 201 jobs succeeded');
is($node->q(q{SELECT count(*) FROM public.done WHERE who = 'alice'}), '200', 'each of her tasks\' effects is there once');
is( $node->q(
		q{SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
           WHERE j.created_by = 'alice'::regrole AND r.status <> 'succeeded'}),
	'0',
	'no attempt of hers failed because of another role\'s job');

ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 70 FROM workflow.jobs
           WHERE workflow = 'm_ext' AND execution = 'failed'}),
	'the sweeper timed out all 70 external jobs');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) = 5 FROM workflow.jobs
           WHERE workflow IN ('m_requeue', 'm_info', 'm_stubborn')
             AND execution IN ('failed', 'canceled')}),
	'mallory\'s poisoned jobs ended, each on its own');
is( $node->q(
		q{SELECT string_agg(DISTINCT r.error->>'sqlstate', ',' ORDER BY r.error->>'sqlstate')
            FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
           WHERE j.workflow IN ('m_requeue', 'm_info')}),
	'22023,54000',
	'the requeue overflow and the info flood failed their own task (22023, 54000)');

# the job whose row mallory keeps locked is not lost: it finishes once she lets go
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $slow"), 'running',
	'meanwhile the locked job is still running, not lost');
# a runner waits at most 200 ms for such a row, then 10 ms per retry: a
# new job still runs at once meanwhile
my $t0 = $node->q(q{SET ROLE alice; SELECT workflow.create_job('a_work', '{"n": 0}')});
ok( $node->poll_query_until(
		'postgres', "SELECT execution = 'succeeded' FROM workflow.jobs WHERE id = $t0"),
	'no runner is held by her lock: a new job of alice runs meanwhile');
$locker->query_safe('ROLLBACK');
$locker->quit;
ok( $node->poll_query_until(
		'postgres', "SELECT execution = 'succeeded' FROM workflow.jobs WHERE id = $slow"),
	'the locked job finishes once the lock is released (her cancel was rolled back)');
is($node->q(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'}),
	'2', 'both runners are there');

$node->stop('fast');
done_testing();
