# 002_wakeup.pl: the SQL side of wake-up at commit must not change
# transaction semantics.  create_job registers a wake-up that fires at
# commit (src/wakeup.c); a rolled-back job must leave nothing, a committed
# one must be there, and a prepared transaction must still create its job
# at COMMIT PREPARED (and nothing at ROLLBACK PREPARED).  The session that
# prepared, aborted or committed must keep working normally afterwards.
#
# Waking real runners is tested with the runners themselves.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# no runner, and none of the runners' intervals
my $node = WorkflowNode->create('wakeup',
	settings => {
		max_prepared_transactions => '2',
		'workflow.runners' => '0',
		'workflow.enabled' => 'off',
		'workflow.run_interval' => undef,
		'workflow.activity_interval' => undef,
		'workflow.stale_after' => undef,
	});
$node->safe_psql('postgres',
	q{SELECT workflow.create_workflow('{"name": "w", "chain": [{"name": "a", "sql": "select 1"}]}')}
);

sub jobs_with_key
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM workflow.jobs WHERE params ->> 'k' = '$key'");
}

sub create_job_sql
{
	my ($key) = @_;
	return qq{SELECT workflow.create_job('w', '{"k": "$key"}');};
}

# rollback
$node->safe_psql('postgres',
	"BEGIN; " . create_job_sql('rolled-back') . " ROLLBACK;");
is(jobs_with_key('rolled-back'), '0', 'rollback: no job');

# commit
$node->safe_psql('postgres',
	"BEGIN; " . create_job_sql('committed') . " COMMIT;");
is(jobs_with_key('committed'), '1', 'commit: the job exists');

# autocommit
$node->safe_psql('postgres', create_job_sql('autocommit'));
is(jobs_with_key('autocommit'), '1', 'autocommit: the job exists');

# rollback to a savepoint, the rest commits
$node->safe_psql('postgres',
	    "BEGIN; "
	  . create_job_sql('kept')
	  . " SAVEPOINT s; "
	  . create_job_sql('in-savepoint')
	  . " ROLLBACK TO SAVEPOINT s; COMMIT;");
is(jobs_with_key('in-savepoint'), '0', 'savepoint: the rolled-back job is gone');
is(jobs_with_key('kept'), '1', 'savepoint: the job before the savepoint committed');

# a transaction that fails after create_job
my ($rc, $out, $err) = $node->psql('postgres',
	"BEGIN; " . create_job_sql('failed-xact') . " SELECT 1/0; COMMIT;");
isnt($rc, 0, 'failed transaction: the transaction failed');
is(jobs_with_key('failed-xact'), '0', 'failed transaction: no job');

# one session: rollback, then commit, then more work; nothing leaks from the
# aborted transaction into the next one
$node->safe_psql('postgres',
	    "BEGIN; "
	  . create_job_sql('same-session-1')
	  . " ROLLBACK; BEGIN; "
	  . create_job_sql('same-session-2')
	  . " COMMIT; SELECT 1;");
is(jobs_with_key('same-session-1') . '/' . jobs_with_key('same-session-2'),
	'0/1', 'same session: the aborted job is gone, the next one committed');

# PREPARE TRANSACTION ... COMMIT PREPARED
$node->safe_psql('postgres',
	"BEGIN; " . create_job_sql('prepared') . " PREPARE TRANSACTION 'wf_p1';");
is(jobs_with_key('prepared'), '0', 'prepared: the job is not visible before COMMIT PREPARED');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'wf_p1'"),
	'1',
	'prepared: the transaction is prepared');
$node->safe_psql('postgres', "COMMIT PREPARED 'wf_p1'");
is(jobs_with_key('prepared'), '1', 'prepared: COMMIT PREPARED creates the job');
is( $node->safe_psql(
		'postgres',
		"SELECT execution FROM workflow.jobs WHERE params ->> 'k' = 'prepared'"),
	'queued',
	'prepared: the job is queued');

# PREPARE TRANSACTION ... ROLLBACK PREPARED
$node->safe_psql('postgres',
	"BEGIN; " . create_job_sql('prepared-rb') . " PREPARE TRANSACTION 'wf_p2';");
$node->safe_psql('postgres', "ROLLBACK PREPARED 'wf_p2'");
is(jobs_with_key('prepared-rb'), '0', 'prepared: ROLLBACK PREPARED leaves no job');

# the session that prepared goes on with ordinary transactions
$node->safe_psql('postgres',
	    "BEGIN; "
	  . create_job_sql('prepared-then-1')
	  . " PREPARE TRANSACTION 'wf_p3'; BEGIN; "
	  . create_job_sql('prepared-then-2')
	  . " COMMIT; COMMIT PREPARED 'wf_p3';");
is(jobs_with_key('prepared-then-1') . '/' . jobs_with_key('prepared-then-2'),
	'1/1', 'prepared: the preparing session commits further jobs normally');

# COMMIT PREPARED from a session that never called create_job
$node->safe_psql('postgres',
	"BEGIN; " . create_job_sql('prepared-other') . " PREPARE TRANSACTION 'wf_p4';");
$node->safe_psql('postgres', "SELECT 1");
$node->safe_psql('postgres', "COMMIT PREPARED 'wf_p4'");
is(jobs_with_key('prepared-other'), '1',
	'prepared: COMMIT PREPARED in another session creates the job');

is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'no prepared transaction is left behind');

# nothing went wrong in the server
my @bad = $node->log_lines(qr/\b(PANIC|FATAL):|server process .* terminated/);
is_deeply(\@bad, [], 'server log: no PANIC, FATAL or crashed backend');

$node->stop;

done_testing();
