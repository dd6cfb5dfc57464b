# 170_upgrade.pl: ALTER EXTENSION workflow UPDATE from 1.0 to 1.1 with work
# in flight (README "Install", Upgrading; src/sql/README.md).
#
# The library is always the new one (1.1).  With the runners and the sweeper
# paused (workflow.enabled = off), the database is installed as 1.0:
#   - CREATE EXTENSION workflow VERSION '1.0' works with the new library
#     (check_function_bodies: every C symbol the 1.0 script names exists);
#     the 1.0 SQL then behaves as 1.0 (jobs API, runner protocol), and
#     poll_tasks refuses to run until the update;
#   - the test plays a 1.0 in-server runner through 1.0's own SQL
#     (_runner_claim, _runner_record): a job succeeded (with info), one
#     failed, one waits for a signal, one for a 3 s timer;
#   - queued jobs (one with an idempotency key), an external task claimed
#     with run_job by worker wally (role wally, session kept open) that
#     holds target acct-1, a job of that target queued behind it, an
#     external task claimed by worker walt whose session has ended, and a
#     pg_cron schedule (when pg_cron is installed); an idempotency key
#     used for three jobs of one workflow (two finished) and one for live
#     jobs of two workflows, as 1.0 allowed.
# Then ALTER EXTENSION workflow UPDATE, and every piece goes on:
#   - version 1.1; runner ids owned as the update script says (wally-1 by
#     wally, whose session registered it and is still connected; walt-1
#     and runner-1 by the extension owner); the target lock is alice's;
#     lease_seq is gone;
#   - wally completes his task with its 1.0 lease; walt may not (42501),
#     registers a new id, and an administrator completes his old task;
#   - with the runners enabled the queued jobs run, the job of acct-1 only
#     after the holder released it; resume_job ends the signal wait and the
#     timer ends; the idempotency key still finds its job, a key used for
#     several jobs stays on the newest live one only; the finished jobs
#     are there with their task runs and info; no target is held at the
#     end; the schedule is listed and can be removed;
#   - CREATE EXTENSION workflow without a version installs 1.1;
#   - the updated database has the objects of a fresh 1.1 install: the same
#     extension members and configuration tables, and the same pg_dump
#     --schema-only of schema workflow once the members are detached from
#     the extension in both databases (pg_dump leaves extension members
#     out); only pg_dump's random \restrict key is normalised.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# pg_cron too when it is installed; the extension is created below, as 1.0
my $node = WorkflowNode->create('upgrade',
	pg_cron => 'if_installed',
	extension => 0,
	settings => {
		# paused while the database is 1.0
		'workflow.enabled' => 'off',
		# nothing of this test may go stale or expire on its own
		'workflow.stale_after' => '10min',
		'workflow.task_lease' => '10min',
	});
my $have_cron = $node->has_pg_cron;

###############################################################################
# 1.0
###############################################################################

$node->q(q{CREATE EXTENSION workflow VERSION '1.0'});
is($node->q(q{SELECT extversion FROM pg_extension WHERE extname = 'workflow'}), '1.0', 'installed as 1.0');
cmp_ok(
	$node->q(q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'workflow'::regnamespace
          AND prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')}),
	'>', 0,
	'1.0 declares C functions, all found in the new library (CREATE FUNCTION checks the symbols)');
is($node->q(q{SELECT to_regclass('workflow.lease_seq') IS NOT NULL}), 't', '1.0 has workflow.lease_seq');

$node->create_role('alice', 'workflow_user');
$node->create_role($_, 'workflow_worker') for qw(wally walt);
$node->q('GRANT USAGE ON SCHEMA cron TO alice') if $have_cron;

$node->q_as('alice', q{
SELECT workflow.create_workflow('{"name": "quick", "chain": [{"name": "t", "sql": "select ($1->''job''->''params''->>''n'')::int * 2"}]}');
SELECT workflow.create_workflow('{"name": "fails", "chain": [{"name": "boom", "sql": "select 1/0"}]}');
SELECT workflow.create_workflow('{"name": "ext", "chain": [{"name": "pay", "task_type": "pay"}, {"name": "after", "sql": "select $1->''results''->''pay''"}]}');
SELECT workflow.create_workflow('{"name": "signal", "chain": [{"name": "w", "wait": "signal"}, {"name": "after", "sql": "select $1->''results''->''w''"}]}');
SELECT workflow.create_workflow('{"name": "timer", "chain": [{"name": "w", "wait": "3 s"}, {"name": "after", "sql": "select ''timer done''::text"}]}');
});

# the jobs a 1.0 runner handles, played through 1.0's own SQL (the
# library's runners are paused)
my $s1 = $node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 21}')});
my $f1 = $node->q_as('alice', q{SELECT workflow.create_job('fails')});
my $w1 = $node->q_as('alice', q{SELECT workflow.create_job('signal')});
my $w2 = $node->q_as('alice', q{SELECT workflow.create_job('timer')});
$node->q(q{SELECT workflow.register_runner('runner-1', 'runner')});
is( $node->q(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM workflow._runner_claim('runner-1', 10)}),
	"$s1,$f1,$w1,$w2",
	'1.0: a runner claims the four jobs');
$node->q(qq{
SELECT workflow._runner_record($s1, lease, 'succeeded', '42', NULL, now(), NULL,
                               ARRAY['{"progress": "half"}'::jsonb]) FROM workflow.jobs WHERE id = $s1;
SELECT workflow._runner_record($f1, lease, 'fatal', NULL, '{"message": "division by zero"}', now(), NULL, NULL)
  FROM workflow.jobs WHERE id = $f1;
SELECT workflow._runner_record(id, lease, 'wait_step', NULL, NULL, now(), NULL, NULL)
  FROM workflow.jobs WHERE id IN ($w1, $w2);
});
is( $node->q(qq{SELECT string_agg(execution::text, ',' ORDER BY id) FROM workflow.jobs WHERE id IN ($s1, $f1, $w1, $w2)}),
	'succeeded,failed,waiting,waiting',
	'1.0: one job succeeded, one failed, two wait (a signal, a timer)');

# queued work, and external tasks in progress
my $q1 = $node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 1}', idempotency_key => 'order-1')});
my $q2 = $node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 2}')});
my $e1 = $node->q_as('alice', q{SELECT workflow.create_job('ext', '{"amount": 10}', target => 'acct-1')});
my $tq = $node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 3}', target => 'acct-1')});
my $e2 = $node->q_as('alice', q{SELECT workflow.create_job('ext', '{"amount": 20}')});

# 1.0 protected an idempotency key only while its job was live, and per
# workflow: alice used "dup-1" again after its jobs had finished (played by
# marking them succeeded), and "dup-2" for live jobs of two workflows
my @dup;
for my $i (1 .. 3)
{
	push @dup, $node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 5}', idempotency_key => 'dup-1')});
	$node->q(qq{UPDATE workflow.jobs SET execution = 'succeeded', result = '10', finished_at = now() WHERE id = $dup[-1]})
	  if $i < 3;
}
my $dq = $node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 6}', idempotency_key => 'dup-2')});
my $dt = $node->q_as('alice', q{SELECT workflow.create_job('timer', '{}', idempotency_key => 'dup-2')});
is($node->q(q{SELECT count(*) FROM workflow.jobs WHERE idempotency_key IN ('dup-1', 'dup-2')}),
	'5', '1.0: alice\'s key dup-1 is on three jobs (two finished), dup-2 on two live jobs');

# wally's worker keeps its session across the update
my $wally = $node->background_psql('postgres', extra_params => [ '-U', 'wally' ]);
my $lease1 = $wally->query_safe(qq{SELECT lease FROM workflow.run_job($e1, 'wally-1')});
like($lease1, qr/^\d+$/, "1.0: wally claims the external task of job $e1 (lease $lease1)");
my $lease2 = $node->q_as('walt', qq{SELECT lease FROM workflow.run_job($e2, 'walt-1')});
like($lease2, qr/^\d+$/, "1.0: walt claims the external task of job $e2 (lease $lease2), then disconnects");
is($node->q(q{SELECT string_agg(target || ':' || job_id, ',') FROM workflow.target_locks}),
	"acct-1:$e1", '1.0: job e1 holds target acct-1');

my ($rc, $out, $err) = $node->psql('postgres', q{SELECT * FROM workflow.poll_tasks('pay', 'wally-2')},
	extra_params => [ '-U', 'wally' ]);
isnt($rc, 0, '1.0 with the new library: poll_tasks refuses to run until the update');
note("poll_tasks before the update: $err");

my $cron_id;
if ($have_cron)
{
	$cron_id = $node->q_as('alice', q{SELECT workflow.schedule('nightly', '0 3 * * *', 'quick', '{"n": 7}')});
	like($cron_id, qr/^\d+$/, "1.0: alice schedules a workflow (pg_cron job $cron_id)");
}

###############################################################################
# the update
###############################################################################

$node->q('ALTER EXTENSION workflow UPDATE');
is($node->q(q{SELECT extversion FROM pg_extension WHERE extname = 'workflow'}), '1.1', 'updated to 1.1');
is($node->q(q{SELECT to_regclass('workflow.lease_seq') IS NULL AND to_regprocedure('workflow._new_lease()') IS NOT NULL}),
	't', 'lease_seq is gone, leases come from _new_lease()');
is( $node->q(q{SELECT string_agg(id || ':' || kind || ':' || owner::text, ',' ORDER BY id) FROM workflow.runners
          WHERE id IN ('runner-1', 'wally-1', 'walt-1')}),
	'runner-1:runner:' . $node->q('SELECT current_user') . ',wally-1:external:wally,walt-1:external:'
	  . $node->q('SELECT current_user'),
	'runner ids: wally-1 is wally\'s (his session is still connected), runner-1 and walt-1 the extension owner\'s');
is($node->q(q{SELECT string_agg(owner::text || ':' || target || ':' || job_id, ',') FROM workflow.target_locks}),
	"alice:acct-1:$e1", 'the target lock is its job\'s creator\'s');
is($node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 1}', idempotency_key => 'order-1')}),
	$q1, 'the idempotency key still finds its queued job');
is( $node->q(q{SELECT string_agg(idempotency_key || ':' || id, ',' ORDER BY id) FROM workflow.jobs
          WHERE idempotency_key IN ('dup-1', 'dup-2')}),
	"dup-1:$dup[2],dup-2:$dt",
	'a key used for several jobs stays on the newest live one, and is cleared on the others');
is($node->q_as('alice', q{SELECT workflow.create_job('quick', '{"n": 5}', idempotency_key => 'dup-1')}),
	$dup[2], 'dup-1 finds that job');
($rc, $out, $err) = $node->psql('postgres', q{SELECT workflow.create_job('quick', '{"n": 6}', idempotency_key => 'dup-2')},
	extra_params => [ '-U', 'alice' ]);
like($err, qr/idempotency key "dup-2" is already used by job $dt/, 'dup-2 is the timer job\'s: the quick job of 1.0 lost it');

# the external tasks claimed under 1.0
is($wally->query_safe(qq{SELECT workflow.complete_task($e1, $lease1, '{"paid": 10}')}),
	't', 'wally completes his task with its 1.0 lease, in the session that claimed it');
($rc, $out, $err) = $node->psql('postgres', qq{SELECT workflow.complete_task($e2, $lease2, '{"paid": 20}')},
	extra_params => [ '-U', 'walt' ]);
like($err, qr/permission denied for runner "walt-1"/,
	'walt, whose session is gone, may not report under walt-1 (the extension owner\'s now)');
($rc, $out, $err) = $node->psql('postgres', q{SELECT workflow.register_runner('walt-1')},
	extra_params => [ '-U', 'walt' ]);
like($err, qr/permission denied for runner "walt-1"/, 'nor register walt-1 again');
$node->q_as('walt', q{SELECT workflow.register_runner('walt-2')});
is($node->q(q{SELECT owner::text FROM workflow.runners WHERE id = 'walt-2'}), 'walt', 'walt registers a new id, his');
is($node->q(qq{SELECT workflow.complete_task($e2, $lease2, '{"paid": 20}')}),
	't', 'an administrator completes the task walt-1 held');
$wally->quit;

###############################################################################
# the runners go on
###############################################################################

$node->q('ALTER SYSTEM SET workflow.enabled = on');
$node->q('SELECT pg_reload_conf()');

sub wait_state
{
	my ($id, $state, $what) = @_;
	ok($node->poll_query_until('postgres', "SELECT execution FROM workflow.jobs WHERE id = $id", $state),
		"$what: $state");
}

wait_state($q1, 'succeeded', "queued job $q1");
wait_state($q2, 'succeeded', "queued job $q2");
wait_state($e1, 'succeeded', "external job $e1 (its SQL task after wally's)");
wait_state($e2, 'succeeded', "external job $e2 (its SQL task after the administrator's report)");
wait_state($tq, 'succeeded', "job $tq of target acct-1");
wait_state($_, 'succeeded', "job $_ of a key used twice under 1.0") for ($dup[2], $dq, $dt);
is($node->q(qq{SELECT result FROM workflow.jobs WHERE id = $e1}), '{"paid": 10}', 'e1 passed wally\'s output on');
is($node->q(qq{SELECT result FROM workflow.jobs WHERE id = $q2}), '4', 'q2 computed its result');
is( $node->q(qq{SELECT (SELECT min(started_at) FROM workflow.task_runs WHERE job_id = $tq)
               >= (SELECT finished_at FROM workflow.jobs WHERE id = $e1)}),
	't', 'the job of acct-1 ran only after e1 released the target');

$node->q_as('alice', qq{SELECT workflow.resume_job($w1, '{"signal": "go"}')});
wait_state($w1, 'succeeded', "signal-waiting job $w1 after resume_job");
is($node->q(qq{SELECT result FROM workflow.jobs WHERE id = $w1}), '{"signal": "go"}', 'it carried the signal\'s result on');
wait_state($w2, 'succeeded', "timer-waiting job $w2");
is($node->q(qq{SELECT result FROM workflow.jobs WHERE id = $w2}), '"timer done"', 'its timer ended and the next task ran');

is( $node->q_as('alice', qq{SELECT format('%s|%s|%s', execution, result, (SELECT count(*) FROM workflow.task_runs WHERE job_id = $s1))
                  || '|' || (SELECT string_agg(info::text, ',') FROM workflow.job_info WHERE job_id = $s1)
                  FROM workflow.jobs WHERE id = $s1}),
	'succeeded|42|1|{"progress": "half"}',
	'the 1.0 job that succeeded is there for alice, with its task run and info');
is( $node->q_as('alice', qq{SELECT format('%s|%s|%s', execution, error->>'message', (SELECT count(*) FROM workflow.task_runs WHERE job_id = $f1))
                  FROM workflow.jobs WHERE id = $f1}),
	'failed|division by zero|1',
	'the 1.0 job that failed is there, with its error and task run');
is($node->q('SELECT count(*) FROM workflow.target_locks'), '0', 'no target is held at the end');
is($node->q(q{SELECT count(*) FROM workflow.jobs WHERE execution NOT IN ('succeeded', 'failed')}),
	'0', 'every job is finished');

if ($have_cron)
{
	is($node->q_as('alice', q{SELECT format('%s|%s|%s|%s', name, cron, workflow, params) FROM workflow.schedules}),
		'nightly|0 3 * * *|quick|{"n": 7}', 'the schedule is still listed');
	$node->q_as('alice', q{SELECT workflow.unschedule('nightly')});
	is($node->q_as('alice', q{SELECT count(*) FROM workflow.schedules}), '0', 'and can be removed');
}

###############################################################################
# a fresh install is 1.1, with the same objects as the updated database
###############################################################################

$node->q('CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION workflow');
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'workflow'}),
	'1.1', 'CREATE EXTENSION workflow installs 1.1');

my $members = q{
SELECT string_agg(o.type || ' ' || o.identity, E'\n' ORDER BY o.type, o.identity)
  FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) o
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'workflow')};
my $config = q{
SELECT string_agg(c::regclass::text || ' ' || coalesce(w, 'NULL'), E'\n' ORDER BY c::regclass::text)
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(c, w)
 WHERE e.extname = 'workflow'};
is($node->q($members), $node->safe_psql('fresh', $members), 'the same extension members');
is($node->q($config), $node->safe_psql('fresh', $config), 'the same configuration tables (pg_dump keeps their rows)');

# pg_dump leaves extension members out: detach them, then dump the schema
my $detach = q{
DO $$
DECLARE
    o record;
BEGIN
    -- (from PostgreSQL 17 on, the array type of a member type, the
    -- multirange of a member range and the row type of a member table are
    -- members too, and leave along with it: not detached on their own)
    FOR o IN SELECT x.type, x.identity
               FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) x
              WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'workflow')
                AND NOT EXISTS (SELECT FROM pg_type t
                                 WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                                   AND (t.typtype = 'm'
                                        OR EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
                                        OR EXISTS (SELECT FROM pg_class c
                                                    WHERE c.oid = t.typrelid AND c.relkind <> 'c')))
    LOOP
        EXECUTE format('ALTER EXTENSION workflow DROP %s %s', o.type, o.identity);
    END LOOP;
END
$$};
$node->q('ALTER SYSTEM SET workflow.enabled = off');
$node->q('SELECT pg_reload_conf()');
$node->q($detach);
$node->safe_psql('fresh', $detach);

sub dump_schema
{
	my ($db) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ $node->installed_command('pg_dump'), '--schema-only', '--schema=workflow', '-d', $node->connstr($db) ],
		'>', \$stdout, '2>', \$stderr);
	ok($ok, "pg_dump of $db") or diag($stderr);
	$stdout =~ s/^\\(un)?restrict \S+$/\\$1restrict KEY/mg;
	return $stdout;
}
my $updated = dump_schema('postgres');
my $fresh = dump_schema('fresh');
cmp_ok(length($fresh), '>', 10000, 'the dump has the objects of the extension');
like($fresh, qr/CREATE FUNCTION workflow\._new_lease\(\)/, 'for instance _new_lease()');
if ($updated eq $fresh)
{
	pass('pg_dump --schema-only: the updated database equals a fresh 1.1 install');
}
else
{
	my $dir = PostgreSQL::Test::Utils::tempdir;
	PostgreSQL::Test::Utils::append_to_file("$dir/updated.sql", $updated);
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	my $diff = `diff -u $dir/fresh.sql $dir/updated.sql`;
	fail('pg_dump --schema-only: the updated database equals a fresh 1.1 install');
	diag($diff);
}

$node->stop;
done_testing();
