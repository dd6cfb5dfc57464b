# 001_preload.pl: the extension without and with shared_preload_libraries,
# and its configuration variables (README "Configuration").
#
# (1) Not preloaded: CREATE EXTENSION and create_workflow work, but
#     create_job (which needs the shared memory of the wake-up mechanism)
#     fails with SQLSTATE 55000 and a hint.
# (2) The same node restarted with shared_preload_libraries = 'workflow':
#     create_job works; the GUCs show their documented defaults; unknown
#     names under the reserved prefix are refused; a reloadable GUC changes
#     on reload without a restart.
# (3) The server log of that start has no ERROR (nor FATAL/PANIC).

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# a plain cluster: the library is not preloaded, the extension not created
my $node = WorkflowNode->create('preload', preload => 0, extension => 0);

my $wf = q{{"name": "w", "chain": [{"name": "a", "sql": "select 1"}]}};

###############################################################################
# (1) without shared_preload_libraries
###############################################################################

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'not preloaded: shared_preload_libraries is empty');

my ($rc, $out, $err) = $node->psql_verbose('CREATE EXTENSION workflow');
is($rc, 0, 'not preloaded: CREATE EXTENSION works')
  or diag($err);

($rc, $out, $err) =
  $node->psql_verbose("SELECT workflow.create_workflow('$wf')");
is($rc, 0, 'not preloaded: create_workflow works') or diag($err);
is($out, '1', 'not preloaded: create_workflow returned version 1');

($rc, $out, $err) = $node->psql_verbose("SELECT workflow.create_job('w')");
isnt($rc, 0, 'not preloaded: create_job fails');
like(
	$err,
	qr/ERROR:\s+55000: workflow must be loaded via shared_preload_libraries/,
	'not preloaded: create_job error has SQLSTATE 55000 and the message');
like(
	$err,
	qr/HINT:\s+Add workflow to shared_preload_libraries/,
	'not preloaded: create_job error has the hint');
($rc, $out, $err) = $node->psql_verbose('SELECT count(*) FROM workflow.jobs');
is($out, '0', 'not preloaded: the failed create_job left no job') or diag($err);

# the server survived all of this (no FATAL took the backend or server down)
is($node->safe_psql('postgres', 'SELECT 1'),
	'1', 'not preloaded: the server still accepts queries');

###############################################################################
# (2) restarted with shared_preload_libraries = 'workflow'
###############################################################################

$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'workflow'
workflow.runners = 0
});
my $log_offset = -s $node->logfile;
$node->restart;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'workflow', 'preloaded: shared_preload_libraries');

# if part (1) failed before creating them, create the extension and the
# workflow now so that this part still tests what it is about
$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS workflow');
$node->safe_psql('postgres',
	"SELECT workflow.create_workflow('$wf') WHERE NOT EXISTS (SELECT FROM workflow.workflows WHERE name = 'w')");

($rc, $out, $err) = $node->psql_verbose("SELECT workflow.create_job('w')");
is($rc, 0, 'preloaded: create_job works') or diag($err);
like($out, qr/^\d+$/, 'preloaded: create_job returned a job id');
is( $node->safe_psql(
		'postgres', "SELECT execution FROM workflow.jobs WHERE workflow = 'w'"),
	'queued',
	'preloaded: the job is queued');

# the documented defaults (runners as configured here)
my %defaults = (
	'workflow.database' => '*',
	'workflow.runners' => '0',
	'workflow.run_interval' => '250ms',
	'workflow.activity_interval' => '1s',
	'workflow.stale_after' => '10s',
	'workflow.stale_job_action' => 'cancel',
	'workflow.retention' => '7d',
	'workflow.enabled' => 'on',);
foreach my $guc (sort keys %defaults)
{
	is($node->safe_psql('postgres', "SHOW $guc"),
		$defaults{$guc}, "preloaded: SHOW $guc = $defaults{$guc}");
}

# a name under the reserved prefix that the extension does not define
($rc, $out, $err) = $node->psql_verbose('SET workflow.no_such_setting = 1');
isnt($rc, 0, 'reserved prefix: SET of an unknown workflow.* name is refused');
like($err, qr/workflow\.no_such_setting/,
	'reserved prefix: the error names the parameter');
($rc, $out, $err) =
  $node->psql_verbose("ALTER SYSTEM SET workflow.no_such_setting = 'x'");
isnt($rc, 0,
	'reserved prefix: ALTER SYSTEM of an unknown workflow.* name is refused');

# reload, no restart
is( $node->safe_psql(
		'postgres',
		"SELECT context FROM pg_settings WHERE name = 'workflow.run_interval'"),
	'sighup',
	'reload: workflow.run_interval is a reloadable (sighup) setting');
my $pid_before = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
$node->safe_psql('postgres', "ALTER SYSTEM SET workflow.run_interval = '5s'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $node->poll_query_until(
		'postgres', 'SHOW workflow.run_interval', '5s'),
	'reload: workflow.run_interval is 5s after ALTER SYSTEM and a reload');
is( $node->safe_psql(
		'postgres',
		"SELECT pending_restart FROM pg_settings WHERE name = 'workflow.run_interval'"),
	'f',
	'reload: no restart pending');
is( $node->safe_psql(
		'postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"),
	$pid_before,
	'reload: the server was not restarted');

###############################################################################
# (3) no ERROR in the server log of the preloaded start
###############################################################################

# everything logged from the restart up to the first query of this part
my $log = slurp_file($node->logfile, $log_offset);
my ($startup) = $log =~ /\A(.*?database system is ready to accept connections[^\n]*\n)/s;
ok(defined $startup, 'log: the preloaded server logged its start')
  or diag($log);
$startup //= $log;
my @bad = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $startup;
is_deeply(\@bad, [], 'log: no ERROR, FATAL or PANIC while starting with the library preloaded');

# and none at all from the server itself after the start, except the
# statements this test made fail on purpose
my @unexpected = grep {
	/\b(ERROR|FATAL|PANIC):/
	  && !/no_such_setting/
} split /\n/, $log;
is_deeply(\@unexpected, [], 'log: no unexpected ERROR after the start');

$node->stop;

done_testing();
