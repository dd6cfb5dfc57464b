# 210_several_databases.pl: one server's workers serve several databases
# (README "Several databases").
#
# workflow.database is left at its default '*'; databases a and b have the
# extension, c does not; 2 runners; workflow.run_interval = '5s', so that
# nothing below can come from the runners' fallback poll.
#
# (1) Both served: a sweeper in a and in b, none in c (its probe found no
#     extension and left), one runner in each; a job in each succeeds.
# (2) Wake-up at commit in each: with both runners asleep, 5 jobs in a and
#     5 in b, one at a time, each start (task start - created_at) within
#     1 s of its creation (without the wake-up, 2.5 s on average).
# (3) A database without a runner (workflow.runners = 1): its job starts
#     within a few seconds, the launcher moving the runner over; in the
#     database it left, the runner shows not alive and holds no job.
# (4) Fair share, with 2 runners: a backlog of 40 jobs of 0.3 s in a draws
#     both runners to a; then a job in b starts while a's backlog still
#     runs, and every job of a succeeds with exactly one run (the runner
#     that left for b handed back, untouched, the jobs it had not started).
# (5) An explicit list, by reload: workflow.database = 'a' serves only a
#     (b's workers leave, both runners go to a); create_job in b warns,
#     once per transaction, with a hint naming workflow.database; back to
#     '*', b is served again and its queued jobs run.
# (6) DROP DATABASE b while a runner executes a 30 s task there and its
#     sweeper runs: it succeeds within a few seconds; a is still served.
#     ALTER DATABASE ... RENAME of a served database succeeds, and the
#     database is served again under its new name.
# (7) The server log has no PANIC, crash or unexpected FATAL.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WorkflowNode;

my $node = WorkflowNode->create('several_databases',
	settings => {
		'workflow.database' => undef,
		'workflow.runners' => '2',
		'workflow.run_interval' => '5s',
	},
	extension => 0);

is($node->safe_psql('postgres', 'SHOW workflow.database'), '*', 'workflow.database is * by default');

$node->safe_psql('postgres', 'CREATE DATABASE a');
$node->safe_psql('postgres', 'CREATE DATABASE b');
$node->safe_psql('postgres', 'CREATE DATABASE c');
for my $db (qw(a b))
{
	$node->safe_psql($db, 'CREATE EXTENSION workflow');
	create_workflows($db);
}

# the workflows every test database has
sub create_workflows
{
	my ($db) = @_;
	$node->safe_psql($db, q{
SELECT workflow.create_workflow('{"name": "quick", "chain": [{"name": "a", "sql": "select clock_timestamp()"}]}');
SELECT workflow.create_workflow('{"name": "slow", "chain": [{"name": "a", "sql": "select pg_sleep(0.3)"}]}');
SELECT workflow.create_workflow('{"name": "sleepy", "chain": [{"name": "a", "sql": "select pg_sleep(30)"}]}');
});
	return;
}

# the databases of the workers of a kind ('runner', 'sweeper'), each with
# its count: "a:1,b:1"
sub workers
{
	my ($kind) = @_;
	return $node->safe_psql('postgres', qq{
SELECT coalesce(string_agg(datname || ':' || n, ',' ORDER BY datname), '')
  FROM (SELECT datname, count(*) AS n FROM pg_stat_activity
         WHERE backend_type = 'workflow $kind' GROUP BY datname) s});
}

# poll until the workers of a kind are as expected; true if they got so
sub wait_workers
{
	my ($kind, $expected, $seconds) = @_;
	return $node->poll_for(qq{
SELECT coalesce(string_agg(datname || ':' || n, ',' ORDER BY datname), '')
  FROM (SELECT datname, count(*) AS n FROM pg_stat_activity
         WHERE backend_type = 'workflow $kind' GROUP BY datname) s},
		$expected, $seconds // 30);
}

# a job of workflow $wf in database $db; returns its id
sub job_in
{
	my ($db, $wf) = @_;
	return $node->safe_psql($db, "SELECT workflow.create_job('$wf')");
}

# poll until job $id of database $db is finished; returns its state
sub finished_in
{
	my ($db, $id) = @_;
	$node->poll_query_until($db,
		"SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $id")
	  or diag("job $id of $db did not finish");
	return $node->safe_psql($db, "SELECT execution FROM workflow.jobs WHERE id = $id");
}

# both runners are asleep in their wait for work, one in a and one in b
sub runners_asleep_in_a_and_b
{
	return $node->poll_for(q{
SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity
 WHERE backend_type = 'workflow runner' AND wait_event_type = 'Extension'}, 'a,b', 30);
}

###############################################################################
# (1) both databases served, not c
###############################################################################

ok(wait_workers('sweeper', 'a:1,b:1'), 'served: a sweeper in a and in b, none elsewhere')
  or diag('sweepers: ' . workers('sweeper'));
ok(wait_workers('runner', 'a:1,b:1'), 'served: the two runners are shared, one in a and one in b')
  or diag('runners: ' . workers('runner'));
ok( $node->poll_for(
		q{SELECT count(*) FROM pg_stat_activity WHERE datname IN ('c', 'postgres', 'template1') AND backend_type LIKE 'workflow%'},
		'0', 30),
	'served: no worker in c (no extension), postgres or template1');
ok(scalar($node->log_lines(qr/workflow serves database "a"/)) && scalar($node->log_lines(qr/workflow serves database "b"/)),
	'served: the launcher logged that it serves a and b');

is(finished_in('a', job_in('a', 'quick')), 'succeeded', 'served: a job in a succeeds');
is(finished_in('b', job_in('b', 'quick')), 'succeeded', 'served: a job in b succeeds');

###############################################################################
# (2) wake-up at commit in each database
###############################################################################

for my $db (qw(a b))
{
	my @ms;
	my $all_ok = 1;
	for my $i (1 .. 5)
	{
		$all_ok &&= runners_asleep_in_a_and_b();
		my $id = job_in($db, 'quick');
		$all_ok &&= finished_in($db, $id) eq 'succeeded';
		push @ms, $node->safe_psql($db, qq{
SELECT round(extract(epoch FROM r.started_at - j.created_at) * 1000)
  FROM workflow.jobs j JOIN workflow.task_runs r ON r.job_id = j.id WHERE j.id = $id});
	}
	my @sorted = sort { $a <=> $b } @ms;
	note("wake-up in $db, created_at -> task start (ms): @ms");
	ok($all_ok, "wake-up in $db: 5 jobs created while the runners slept all succeeded");
	cmp_ok($sorted[-1], '<', 1000,
		"wake-up in $db: every task started within 1s of its job's creation (max $sorted[-1] ms; run_interval 5s)");
}

###############################################################################
# (3) a database without a runner gets one
###############################################################################

$node->safe_psql('postgres', 'ALTER SYSTEM SET workflow.runners = 1');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_for(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'}, '1', 30),
	'one runner: the second slot is stopped');
my $alone = $node->safe_psql('postgres',
	q{SELECT datname FROM pg_stat_activity WHERE backend_type = 'workflow runner'});
my $other = $alone eq 'a' ? 'b' : 'a';
my $t0 = time();
my $moved = job_in($other, 'quick');
is(finished_in($other, $moved), 'succeeded',
	"one runner: a job in $other, whose runner is in $alone, succeeds");
my $delay = $node->safe_psql($other, qq{
SELECT round(extract(epoch FROM r.started_at - j.created_at) * 1000)
  FROM workflow.jobs j JOIN workflow.task_runs r ON r.job_id = j.id WHERE j.id = $moved});
cmp_ok($delay, '<', 5000, "one runner: it started $delay ms after its creation (the runner moved to $other)");
ok( $node->poll_query_until($alone, q{
SELECT bool_and(NOT alive AND running_jobs = 0) FROM workflow.runner_status WHERE kind = 'runner'}),
	"one runner: in $alone, which it left, the runner shows not alive and holding no job");

$node->safe_psql('postgres', 'ALTER SYSTEM SET workflow.runners = 2');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_workers('runner', 'a:1,b:1'), 'two runners again, one in each database')
  or diag('runners: ' . workers('runner'));

###############################################################################
# (4) fair share: a backlog in a does not starve b
###############################################################################

$node->safe_psql('a', q{SELECT workflow.create_job('slow', jsonb_build_object('n', i)) FROM generate_series(1, 40) i});
ok(wait_workers('runner', 'a:2', 30), 'fair share: the backlog of a draws both runners to a')
  or diag('runners: ' . workers('runner'));
my $left_before = $node->safe_psql('a',
	q{SELECT count(*) FROM workflow.jobs WHERE workflow = 'slow' AND execution <> 'succeeded'});
my $fair = job_in('b', 'quick');
is(finished_in('b', $fair), 'succeeded', 'fair share: the job in b succeeds');
my ($fair_started, $fair_delay) = split /\|/, $node->safe_psql('b', qq{
SELECT r.started_at, round(extract(epoch FROM r.started_at - j.created_at) * 1000)
  FROM workflow.jobs j JOIN workflow.task_runs r ON r.job_id = j.id WHERE j.id = $fair});
my $left_then = $node->safe_psql('a', qq{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'slow' AND (finished_at IS NULL OR finished_at > '$fair_started')});
note("fair share: $left_before jobs of a left when b's job was created, $left_then when it started");
cmp_ok($left_before, '>=', 10, 'fair share: a still had a backlog when the job in b was created');
cmp_ok($left_then, '>', 0, "fair share: the job in b started while a's backlog still ran ($left_then jobs left)");
cmp_ok($fair_delay, '<', 5000, "fair share: the job in b started $fair_delay ms after its creation");
ok( $node->poll_query_until('a',
		q{SELECT count(*) = 40 FROM workflow.jobs WHERE workflow = 'slow' AND execution = 'succeeded'}),
	'fair share: every job of the backlog succeeded');
is( $node->safe_psql('a', q{
SELECT count(*) || ' runs, ' || count(DISTINCT r.job_id) || ' jobs, ' || count(*) FILTER (WHERE r.status <> 'succeeded') || ' not succeeded'
  FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id WHERE j.workflow = 'slow'}),
	'40 runs, 40 jobs, 0 not succeeded',
	'fair share: one succeeded run per job, no job failed or handed back with a run');

###############################################################################
# (5) an explicit list: workflow.database = 'a', by reload
###############################################################################

$node->safe_psql('postgres', "ALTER SYSTEM SET workflow.database = 'a'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_workers('sweeper', 'a:1'), "list 'a': only a has a sweeper")
  or diag('sweepers: ' . workers('sweeper'));
ok(wait_workers('runner', 'a:2'), "list 'a': both runners are in a")
  or diag('runners: ' . workers('runner'));
ok(scalar($node->log_lines(qr/workflow no longer serves database "b"/)),
	"list 'a': the launcher logged that it no longer serves b");

my ($stdout, $stderr) = ('', '');
$node->psql('b', q{BEGIN; SELECT workflow.create_job('quick'); SELECT workflow.create_job('quick'); COMMIT;},
	stdout => \$stdout, stderr => \$stderr);
my @unserved = split /\n/, $stdout;
is(scalar(@unserved), 2, "list 'a': create_job in b still creates the jobs") or diag($stderr);
like($stderr, qr/WARNING:  no workflow worker serves database "b"/, "list 'a': create_job in b warns");
like($stderr, qr/DETAIL:  workflow.database is "a": the jobs of this database stay queued\./,
	"list 'a': the warning says why");
like($stderr, qr/HINT:  Add the database to workflow.database/, "list 'a': the hint names workflow.database");
is(scalar(() = $stderr =~ /WARNING:/g), 1, "list 'a': one warning for the transaction's two jobs");
is( $node->safe_psql('b', "SELECT string_agg(execution::text, ',') FROM workflow.jobs WHERE id IN ($unserved[0], $unserved[1])"),
	'queued,queued', "list 'a': the jobs of b are queued");
($stdout, $stderr) = ('', '');
$node->psql('a', q{SELECT workflow.create_job('quick')}, stdout => \$stdout, stderr => \$stderr);
is($stderr, '', "list 'a': create_job in a does not warn");
is(finished_in('a', $stdout), 'succeeded', "list 'a': a job in a succeeds");

$node->safe_psql('postgres', 'ALTER SYSTEM RESET workflow.database');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_workers('sweeper', 'a:1,b:1'), "back to '*': b has its sweeper again")
  or diag('sweepers: ' . workers('sweeper'));
is(finished_in('b', $unserved[0]) . ',' . finished_in('b', $unserved[1]), 'succeeded,succeeded',
	"back to '*': the jobs queued in b while it was not served run");

###############################################################################
# (6) DROP DATABASE and RENAME of served databases
###############################################################################

ok(wait_workers('runner', 'a:1,b:1'), 'drop: one runner in each database')
  or diag('runners: ' . workers('runner'));
my $sleepy = job_in('b', 'sleepy');
ok( $node->poll_for(qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'workflow runner' AND datname = 'b' AND wait_event = 'PgSleep'}, '1', 30),
	'drop: a runner of b is inside a 30 s task');
$t0 = time();
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE b');
my $took = time() - $t0;
is($rc, 0, 'drop: DROP DATABASE b succeeds while its workers run') or diag($err);
cmp_ok($took, '<', 8, sprintf('drop: it took %.2fs', $took));
is( $node->safe_psql('postgres', q{SELECT count(*) FROM pg_database WHERE datname = 'b'}),
	'0', 'drop: b is gone');
ok(wait_workers('sweeper', 'a:1'), 'drop: only a has a sweeper')
  or diag('sweepers: ' . workers('sweeper'));
ok(wait_workers('runner', 'a:2'), 'drop: both runners serve a')
  or diag('runners: ' . workers('runner'));
is(finished_in('a', job_in('a', 'quick')), 'succeeded', 'drop: a job in a still succeeds');

$node->safe_psql('postgres', 'CREATE DATABASE e');
$node->safe_psql('e', 'CREATE EXTENSION workflow');
create_workflows('e');
ok(wait_workers('sweeper', 'a:1,e:1'), 'rename: e is served') or diag('sweepers: ' . workers('sweeper'));
($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE e RENAME TO e2');
is($rc, 0, 'rename: ALTER DATABASE e RENAME TO e2 succeeds while e is served') or diag($err);
ok(wait_workers('sweeper', 'a:1,e2:1'), 'rename: e2 is served') or diag('sweepers: ' . workers('sweeper'));
is(finished_in('e2', job_in('e2', 'quick')), 'succeeded', 'rename: a job in e2 succeeds');

###############################################################################
# (7) the server log
###############################################################################

# (a sweeper is stopped with a FATAL "terminating background worker" when
# its database stops being served: expected)
my @bad = $node->log_lines(
	qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/,
	except => qr/terminating background worker "workflow sweeper" due to administrator command/);
is_deeply(\@bad, [], 'server log: no PANIC, unexpected FATAL or crashed backend');

$node->stop;

done_testing();
