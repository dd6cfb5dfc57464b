# 280_claim_contention.pl: runners claiming side by side do not undo each
# other's batches.
#
# A runner's claim whose snapshot still saw a job queued, taken by another
# runner meanwhile, locks the row's latest version before its recheck finds
# the job running, and keeps that lock until it commits (PostgreSQL's
# FOR NO KEY UPDATE SKIP LOCKED with a recheck).  The runner that runs the
# job locks the row of its success after the task's subtransaction
# (src/guard.c, workflow_job_lock): it waits for such a lock, a millisecond,
# instead of taking it for a change of the job, which would undo its whole
# batch ("job ... changed while its task's success was being recorded")
# and make it pause a second.
#
# (1) Four runners with batches of 5 drain 30,000 1-task jobs that 4
#     producers create meanwhile, 50 per transaction: every job succeeds with
#     one run, and no batch is undone.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create(
	'claim_contention',
	settings => {
		'workflow.runners' => '4',
		'workflow.batch_size' => '5',
		'workflow.run_interval' => '10ms',
		max_connections => '40',
	});

ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '4', 60),
	'four runners are up');
$node->create_workflow(q{{"name": "one", "chain": [{"name": "a", "sql": "select 1"}]}});

###############################################################################
# (1) claims side by side
###############################################################################

my $offset = -s $node->logfile;
my @producers;
my $create = "SELECT count(workflow.create_job('one')) FROM generate_series(1, 50)";
for my $p (1 .. 4)
{
	# 150 transactions of 50 jobs each
	push @producers,
	  IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'), map { ('-c', $create) } 1 .. 150
		],
		'>', \my $out, '2>', \my $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}
is(join(',', map { $_->finish ? 'ok' : 'failed' } @producers), 'ok,ok,ok,ok', '(1) the producers are done');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE workflow = 'one'"), '30000', '(1) they created 30,000 jobs');
ok($node->poll_for("SELECT count(*) FROM workflow.jobs WHERE workflow = 'one' AND execution = 'succeeded'", '30000', 180),
	'(1) every job succeeds');
is($node->q("SELECT count(*), count(DISTINCT job_id) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
              WHERE j.workflow = 'one'"),
	'30000|30000', '(1) with one run each');
is(join("\n", $node->log_lines(qr/changed while its task's success was being recorded/, offset => $offset)),
	'', '(1) no batch was undone by another runner\'s claim');

$node->stop;
done_testing();
