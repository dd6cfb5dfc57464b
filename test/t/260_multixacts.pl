# 260_multixacts.pl: a runner's successes make no MultiXacts.
#
# The record of a batch's successes updates rows the batch's own
# transaction locked (src/guard.c): a lock taken by the task's
# subtransaction instead would make every job's row version a MultiXact
# (a locker and an updater of different transaction ids), which ages the
# database's datminmxid and costs lookups in the MultiXact files.
#
# (1) 500 jobs of a 1-task and 500 of a 3-task SQL workflow, drained by one
#     runner, all succeed, and the server's next MultiXact id (from the
#     checkpoint record) moves by at most 10 (one per 100 jobs).
# A row another transaction holds is still waited for in the task's
# subtransaction (140_runner_faults.pl, (4) and (4b)).

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('multixacts', settings => { 'workflow.runners' => '1' });

ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '1', 60),
	'one runner is up');

$node->create_workflow(q{{"name": "one", "chain": [{"name": "a", "sql": "select 1"}]}});
$node->create_workflow(
	q{{"name": "three", "chain": [{"name": "a", "sql": "select 1"}, {"name": "b", "sql": "select 2"},
                                   {"name": "c", "sql": "select 3"}]}});

# the next MultiXact id, as of a checkpoint taken now
sub next_multixact
{
	$node->q('CHECKPOINT');
	return $node->q('SELECT next_multixact_id FROM pg_control_checkpoint()');
}

###############################################################################
# (1) a drain makes no MultiXacts
###############################################################################

my $before = next_multixact();
$node->q(q{SELECT count(workflow.create_job('one')) FROM generate_series(1, 500)});
$node->q(q{SELECT count(workflow.create_job('three')) FROM generate_series(1, 500)});
ok( $node->poll_for(
		q{SELECT count(*) FROM workflow.jobs WHERE execution = 'succeeded'}, '1000', 120),
	'drain: the 1,000 jobs succeed');
is($node->q(q{SELECT count(*) FROM workflow.task_runs WHERE status = 'succeeded'}),
	'2000', 'drain: one run per task, 2,000');
my $after = next_multixact();
cmp_ok($after - $before, '<=', 10, "drain: at most 10 MultiXacts for 1,000 jobs (made $before -> $after)");

done_testing();
