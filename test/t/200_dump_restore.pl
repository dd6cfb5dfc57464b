# 200_dump_restore.pl: pg_dump of a database with the extension is clean
# and complete, and a restore into another cluster goes on where the dump
# left off (README "Operations", backup, dump and restore).
#
# Source cluster, runners on: alice stores workflows (calc in two versions,
# the second with onerror and oncancel chains; SQL, external and wait
# tasks) and creates jobs that end succeeded (one with info), failed (its
# onerror chain ran) and canceled (its oncancel chain ran), two that wait (a
# signal, a timer), and one whose external task worker wendy polls (lease
# of 10 minutes) and that holds target acct-1, with a job of that target
# queued behind it; an administrator pauses task type gift.  Then the
# cluster restarts with workflow.enabled = off, so that queued jobs stay
# queued: three more (one of version 1, one with an idempotency key), and
# one whose external task wendy polls with a lease of 4 s that expires
# before anyone reports it; alice schedules a workflow (pg_cron, when it is
# installed).  Checked:
#   - pg_dump (custom format) of the database, and plain pg_dump of another
#     database installed as 1.0 and updated to 1.1, print nothing on
#     stderr: no "unsupported pg_init_privs entry" warning (pg_dump cannot
#     place initial privileges of row types; the install and update scripts
#     leave none);
#   - the roles (pg_dumpall --roles-only) and the dump restored with
#     pg_restore --single-transaction into a fresh cluster (paused) give
#     exactly the rows of the source: workflows, tasks, jobs, task runs,
#     job info, target locks, paused task types, the ids external workers
#     registered (kind external only: the in-server workers register
#     again), the positions of the id sequences, alice's schedule and
#     get_job; the plain dump of the updated database restores with psql;
#   - the restored database enforces what it did: wendy's runner id is
#     still hers (walt may not use it), the idempotency key finds its
#     queued job, a new job takes the next id;
#   - once the runners are enabled: the queued jobs run (each with the
#     version it was created with), wendy completes the task she polled in
#     the source cluster with its lease (leases are data: a task whose lease
#     has not expired is still the worker's), then the job of the held
#     target runs; the expired lease is taken back by the new cluster's
#     sweeper (a failed attempt, lease_expired) and the task handed out
#     again with attempt 2, the old lease refused (55000); resume_job ends
#     the signal wait; the timer ends, not before its time; retry_job runs
#     the canceled job again; new task runs and info continue the restored
#     ids; no target stays held;
#   - pg_cron: the restored schedule keeps the host and port of the source
#     server (pg_cron connects there); once an administrator points it at
#     the new server (and alice changes it to every minute), it fires there
#     as alice.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# Run a command; returns ($ok, $stdout, $stderr).
sub run_tool
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

###############################################################################
# the source cluster
###############################################################################

my $src = WorkflowNode->create('dump_source', pg_cron => 'if_installed');
my $have_cron = $src->has_pg_cron;

$src->create_role('alice', 'workflow_user');
$src->create_role($_, 'workflow_worker') for qw(wendy walt);
$src->q('GRANT USAGE ON SCHEMA cron TO alice') if $have_cron;

$src->create_workflow(q{{"name": "calc", "chain": [
  {"name": "double", "sql": "select workflow.add_info(jsonb_build_object('n', $1->'job'->'params'->'n')); select ($1->'job'->'params'->>'n')::int * 2"}]}},
	as => 'alice');
$src->create_workflow(q{{"name": "calc", "chain": [
  {"name": "triple", "sql": "select ($1->'job'->'params'->>'n')::int * 3"}],
  "onerror": [{"name": "undo", "sql": "select 'undone'::text"}],
  "oncancel": [{"name": "notify", "sql": "select 'notified'::text"}]}},
	as => 'alice');
$src->create_workflow(q{{"name": "fails", "chain": [{"name": "boom", "sql": "select 1/0"}],
  "onerror": [{"name": "cleanup", "sql": "select 'cleaned up'::text"}]}}, as => 'alice');
$src->create_workflow(q{{"name": "pay", "chain": [
  {"name": "charge", "task_type": "pay", "timeout": "10 min"},
  {"name": "after", "sql": "select $1->'results'->'charge'"}]}}, as => 'alice');
$src->create_workflow(q{{"name": "ship", "chain": [
  {"name": "label", "task_type": "ship", "timeout": "4 s", "attempts": 2},
  {"name": "after", "sql": "select $1->'results'->'label'"}]}}, as => 'alice');
$src->create_workflow(q{{"name": "signal", "chain": [{"name": "w", "wait": "signal"},
  {"name": "after", "sql": "select $1->'results'->'w'"}]}}, as => 'alice');
$src->create_workflow(q{{"name": "timer", "chain": [{"name": "w", "wait": "15 s"},
  {"name": "after", "sql": "select 'timer done'::text"}]}}, as => 'alice');
is($src->q(q{SELECT string_agg(name || ':' || version, ',' ORDER BY name, version) FROM workflow.workflows}),
	'calc:1,calc:2,fails:1,pay:1,ship:1,signal:1,timer:1', 'source: the workflows, calc in two versions');

# jobs that the runners take to every state
my $s1 = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 21}', version => 1)});
my $s2 = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 5}')});
my $f1 = $src->q_as('alice', q{SELECT workflow.create_job('fails')});
my $c1 = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 4}', run_at => now() + interval '1 hour')});
$src->q_as('alice', qq{SELECT workflow.cancel_job($c1, 'not needed')});
my $w1 = $src->q_as('alice', q{SELECT workflow.create_job('signal')});
my $w2 = $src->q_as('alice', q{SELECT workflow.create_job('timer')});
is($src->wait_state($s1), 'succeeded', "source: job $s1 (calc version 1) succeeded");
is($src->wait_state($s2), 'succeeded', "source: job $s2 (calc version 2) succeeded");
is($src->wait_state($f1), 'failed', "source: job $f1 failed");
is($src->wait_state($c1), 'canceled', "source: job $c1 canceled");
is($src->wait_state($w1, 'waiting'), 'waiting', "source: job $w1 waits for a signal");
is($src->wait_state($w2, 'waiting'), 'waiting', "source: job $w2 waits for its timer");
is($src->runs($f1), 'boom:failed cleanup:succeeded', 'source: the failed job ran its onerror chain');
is($src->runs($c1), 'notify:succeeded', 'source: the canceled job ran its oncancel chain');

# an external task in progress that holds a target, and a job queued behind
# it
my $e1 = $src->q_as('alice', q{SELECT workflow.create_job('pay', '{"amount": 10}', target => 'acct-1')});
my ($e1_polled, $lease1) =
  split /\|/, $src->q_as('wendy', q{SELECT job_id, lease FROM workflow.poll_tasks('pay', 'wendy-1')});
is($e1_polled, $e1, "source: wendy polls the external task of job $e1");
my $tq = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 6}', target => 'acct-1')});
$src->q(q{SELECT workflow.pause_task_type('gift')});

# paused from here on: queued jobs stay queued, leases and timers are not
# acted on
$src->append_conf('postgresql.conf', "workflow.enabled = off\n");
$src->restart;
is($src->q('SHOW workflow.enabled'), 'off', 'source: restarted with workflow.enabled = off');

my $q1 = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 1}')});
my $q2 = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 2}', version => 1)});
my $q3 = $src->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 3}', idempotency_key => 'order-3')});
my $e2 = $src->q_as('alice', q{SELECT workflow.create_job('ship', '{"parcel": 1}')});
my ($e2_polled, $lease2) =
  split /\|/, $src->q_as('wendy', q{SELECT job_id, lease FROM workflow.poll_tasks('ship', 'wendy-1')});
is($e2_polled, $e2, "source: wendy polls the external task of job $e2 (a lease of 4 s)");

my $cron_id;
if ($have_cron)
{
	$cron_id = $src->q_as('alice', q{SELECT workflow.schedule('nightly', '0 3 * * *', 'calc', '{"n": 7}')});
	like($cron_id, qr/^\d+$/, "source: alice schedules calc (pg_cron job $cron_id)");
}

is( $src->q(q{SELECT string_agg(execution::text || ':' || n, ',' ORDER BY execution)
                FROM (SELECT execution, count(*) AS n FROM workflow.jobs GROUP BY 1) s}),
	'queued:4,running:2,waiting:2,succeeded:2,failed:1,canceled:1',
	'source: jobs in every state');
is($src->q(q{SELECT string_agg(owner::text || ':' || target || ':' || job_id, ',') FROM workflow.target_locks}),
	"alice:acct-1:$e1", "source: job $e1 holds target acct-1");

# the tables compared: name, key order, which rows
my @tables = (
	[ workflows => 'x.id' ],
	[ tasks => 'x.workflow_id, x.phase, x.position' ],
	[ jobs => 'x.id' ],
	[ task_runs => 'x.job_id, x.id' ],
	[ job_info => 'x.job_id, x.id' ],
	[ target_locks => 'x.owner::text, x.target' ],
	[ task_types => 'x.task_type' ],
	[ runners => 'x.id', q{WHERE x.kind = 'external'} ],);

# The rows of table workflow.$table of database $db, one line each, in
# $order
sub table_rows
{
	my ($node, $db, $table, $order, $where) = @_;
	$where //= '';
	return $node->safe_psql($db,
		"SELECT string_agg(x::text, E'\\n' ORDER BY $order) FROM workflow.$table x $where");
}

my $sequences = q{SELECT string_agg(sequencename || ' ' || coalesce(last_value::text, 'unused'), ', '
                                    ORDER BY sequencename)
                    FROM pg_sequences WHERE schemaname = 'workflow'};

my %source;
foreach my $t (@tables)
{
	$source{ $t->[0] } = table_rows($src, 'postgres', @$t);
	isnt($source{ $t->[0] }, '', "source: workflow.$t->[0] has rows");
}
my $src_sequences = $src->q($sequences);
my $src_get_job = $src->q_as('alice', qq{SELECT workflow.get_job($f1)});
my $src_schedules =
  $have_cron ? $src->q_as('alice', q{SELECT format('%s|%s|%s|%s', name, cron, workflow, params) FROM workflow.schedules}) : '';
my $max_job = $src->q('SELECT max(id) FROM workflow.jobs');
my $max_run = $src->q('SELECT max(id) FROM workflow.task_runs');
my $max_info = $src->q('SELECT max(id) FROM workflow.job_info');

###############################################################################
# the dumps
###############################################################################

my $dir = PostgreSQL::Test::Utils::tempdir;

my ($ok, $out, $err) = run_tool($src->installed_command('pg_dump'),
	'-Fc', '-f', "$dir/postgres.dump", '-d', $src->connstr('postgres'));
ok($ok, 'pg_dump -Fc of the database succeeds');
is($err, '', 'pg_dump -Fc prints nothing on stderr (no warning)');
unlike($err, qr/unsupported pg_init_privs entry/, 'in particular no "unsupported pg_init_privs entry"');

($ok, $out, $err) = run_tool($src->installed_command('pg_dumpall'),
	'--roles-only', '-f', "$dir/roles.sql", '-d', $src->connstr('postgres'));
ok($ok, 'pg_dumpall --roles-only succeeds') or diag($err);

# a database installed as 1.0 and updated to 1.1, with a job in progress
$src->q('CREATE DATABASE upd');
$src->safe_psql('upd', q{CREATE EXTENSION workflow VERSION '1.0'});
$src->safe_psql('upd', 'ALTER EXTENSION workflow UPDATE');
is($src->safe_psql('upd', q{SELECT extversion FROM pg_extension WHERE extname = 'workflow'}),
	'1.1', 'database upd: installed as 1.0, updated to 1.1');
$src->safe_psql('upd',
	q{SELECT workflow.create_workflow('{"name": "pay", "chain": [{"name": "charge", "task_type": "pay"}]}')},
	extra_params => [ '-U', 'alice' ]);
$src->safe_psql('upd', q{SELECT workflow.create_job('pay', '{"amount": 1}')}, extra_params => [ '-U', 'alice' ]);
$src->safe_psql('upd', q{SELECT workflow.create_job('pay', '{"amount": 2}')}, extra_params => [ '-U', 'alice' ]);
$src->safe_psql('upd', q{SELECT count(*) FROM workflow.poll_tasks('pay', 'wendy-9')},
	extra_params => [ '-U', 'wendy' ]);
my %upd_source;
$upd_source{$_->[0]} = table_rows($src, 'upd', @$_) for @tables;

($ok, $out, $err) = run_tool($src->installed_command('pg_dump'),
	'-Fp', '-f', "$dir/upd.sql", '-d', $src->connstr('upd'));
ok($ok, 'pg_dump (plain) of the updated database succeeds');
is($err, '', 'pg_dump of the database updated from 1.0 prints nothing on stderr (no warning)');

###############################################################################
# the restore, into a fresh cluster with the runners paused
###############################################################################

my $dst = WorkflowNode->create('dump_target',
	pg_cron => $have_cron,
	start => 0,
	settings => { 'workflow.enabled' => 'off' });
$dst->start;

# roles first: jobs, workflows and runner ids name them (the bootstrap
# superuser exists already, hence an error for it)
($ok, $out, $err) = run_tool($dst->installed_command('psql'),
	'-X', '-q', '-f', "$dir/roles.sql", '-d', $dst->connstr('postgres'));
is(join("\n", grep { !/role "\w+" already exists/ } split /\n/, $err),
	'', 'the roles are restored (no error but for the bootstrap superuser)');
is( $dst->q(q{SELECT pg_has_role('alice', 'workflow_user', 'MEMBER') AND pg_has_role('wendy', 'workflow_worker', 'MEMBER')
                AND NOT pg_has_role('wendy', 'workflow_admin', 'MEMBER')}),
	't', 'the target cluster has alice (workflow_user) and wendy (workflow_worker)');

($ok, $out, $err) = run_tool($dst->installed_command('pg_restore'),
	'--single-transaction', '-d', $dst->connstr('postgres'), "$dir/postgres.dump");
ok($ok, 'pg_restore --single-transaction succeeds');
is($err, '', 'pg_restore prints nothing on stderr');

foreach my $t (@tables)
{
	is(table_rows($dst, 'postgres', @$t), $source{ $t->[0] }, "restored: workflow.$t->[0] has the rows of the source");
}
is($dst->q($sequences), $src_sequences, "restored: the id sequences where they were ($src_sequences)");
is($dst->q_as('alice', qq{SELECT workflow.get_job($f1)}), $src_get_job,
	"restored: get_job($f1) shows alice the same failed job, with its history");

# the dump holds the ids of external workers only: the in-server workers
# register again wherever the dump is restored
($ok, $out, $err) = run_tool($dst->installed_command('pg_restore'),
	'--data-only', '-f', '-', "$dir/postgres.dump");
my ($runner_rows) = $out =~ /^COPY workflow\.runners .*?\n(.*?)^\\\.$/ms;
is(join(',', map { (split /\t/)[0] } split /\n/, $runner_rows // ''),
	'wendy-1', 'the dump has the runner rows of kind external only (wendy-1)');

if ($have_cron)
{
	is($dst->q_as('alice', q{SELECT format('%s|%s|%s|%s', name, cron, workflow, params) FROM workflow.schedules}),
		$src_schedules, "restored: alice's schedule ($src_schedules)");
	is($dst->q(qq{SELECT format('%s|%s|%s', jobid, username, nodeport) FROM cron.job WHERE jobname = 'workflow:nightly'}),
		"$cron_id|alice|" . $src->port,
		'restored: the pg_cron job, alice\'s, with the port of the source server');
}

# the plain dump of the updated database, with psql
$dst->q('CREATE DATABASE upd');
($ok, $out, $err) = run_tool($dst->installed_command('psql'),
	'-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-f', "$dir/upd.sql", '-d', $dst->connstr('upd'));
ok($ok, 'psql restores the plain dump of the updated database in one transaction') or diag($err);
foreach my $t (@tables)
{
	is(table_rows($dst, 'upd', @$t), $upd_source{ $t->[0] }, "restored upd: workflow.$t->[0] has the rows of the source");
}

# what the restored rows enforce
is($dst->sqlstate_of(q{SELECT * FROM workflow.poll_tasks('pay', 'wendy-1')}, as => 'walt'),
	'42501', 'restored: runner id wendy-1 is still wendy\'s (walt gets 42501)');
my $n1 = $dst->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 10}')});
is($n1, $max_job + 1, "restored: a new job takes the next id ($n1)");
is($dst->q_as('alice', q{SELECT workflow.create_job('calc', '{"n": 3}', idempotency_key => 'order-3')}),
	$q3, 'restored: the idempotency key finds its queued job');

###############################################################################
# the runners go on
###############################################################################

$dst->q('ALTER SYSTEM SET workflow.enabled = on');
$dst->q('SELECT pg_reload_conf()');

is($dst->wait_state($q1), 'succeeded', "queued job $q1 ran");
is($dst->wait_state($q2), 'succeeded', "queued job $q2 ran");
is($dst->wait_state($q3), 'succeeded', "queued job $q3 ran");
is($dst->wait_state($n1), 'succeeded', "new job $n1 ran");
is( $dst->q(qq{SELECT string_agg(id || ':' || version || ':' || result, ',' ORDER BY id)
                 FROM workflow.jobs WHERE id IN ($q1, $q2, $q3, $n1)}),
	"$q1:2:3,$q2:1:4,$q3:2:9,$n1:2:30",
	'each with its version (1 doubles, 2 triples)');
is($dst->q(qq{SELECT min(id) > $max_run FROM workflow.task_runs WHERE job_id IN ($q2, $n1)}),
	't', 'their task runs continue the restored ids');
is($dst->q(qq{SELECT min(id) > $max_info FROM workflow.job_info WHERE job_id = $q2}),
	't', 'their info continues the restored ids');

# the task wendy polled in the source cluster
is($dst->q_as('wendy', qq{SELECT workflow.complete_task($e1, $lease1, '{"paid": 10}')}),
	't', "wendy completes the task of job $e1 with the lease she got from the source cluster");
is($dst->wait_state($e1), 'succeeded', "job $e1 succeeded");
is($dst->q(qq{SELECT result FROM workflow.jobs WHERE id = $e1}), '{"paid": 10}', 'with her output');
is($dst->wait_state($tq), 'succeeded', "job $tq of target acct-1 ran");
is( $dst->q(qq{SELECT (SELECT min(started_at) FROM workflow.task_runs WHERE job_id = $tq)
                 >= (SELECT finished_at FROM workflow.jobs WHERE id = $e1)}),
	't', 'only after the holder released the target');

# the task whose lease expired: handed out again (reported at once: its
# new lease lasts the task's 4 s timeout)
my ($e2_again, $attempt, $done) = split /\|/, $dst->q_as('wendy', q{
SELECT p.job_id, p.attempt, workflow.complete_task(p.job_id, p.lease, '{"label": "L-1"}')
  FROM workflow.poll_tasks('ship', 'wendy-1', 1, '30 s') p});
is("$e2_again|$attempt|$done", "$e2|2|t",
	"the expired task of job $e2 is handed out again, attempt 2, and completed with its new lease");
is($dst->sqlstate_of(qq{SELECT workflow.complete_task($e2, $lease2, '{"label": "old"}')}, as => 'wendy'),
	'55000', 'the expired lease is refused (55000)');
is($dst->wait_state($e2), 'succeeded', "job $e2 succeeded");
is($dst->runs($e2, qw(task status lease_expired)), 'label:failed:lease_expired label:succeeded after:succeeded',
	'its runs: the expired lease taken back by the new cluster\'s sweeper, then the second attempt');

# the waiting jobs
$dst->q_as('alice', qq{SELECT workflow.resume_job($w1, '{"signal": "go"}')});
is($dst->wait_state($w1), 'succeeded', "signal-waiting job $w1 succeeded after resume_job");
is($dst->q(qq{SELECT result FROM workflow.jobs WHERE id = $w1}), '{"signal": "go"}', 'with the signal\'s result');
is($dst->wait_state($w2), 'succeeded', "timer-waiting job $w2 succeeded");
is( $dst->q(qq{SELECT r.started_at >= j.run_at FROM workflow.task_runs r, workflow.jobs j
                WHERE r.job_id = $w2 AND j.id = $w2 AND r.task = 'after'}),
	't', 'not before its timer ended');

# the finished jobs: as they were, and a canceled one can be retried
is($dst->q_as('alice', qq{SELECT workflow.retry_job($c1)}), 't', "retry_job of the canceled job $c1");
is($dst->wait_state($c1), 'succeeded', 'it ran again and succeeded');
is($dst->runs($c1), 'notify:succeeded triple:succeeded', 'after its restored history');
is($dst->q(qq{SELECT string_agg(execution::text, ',' ORDER BY id) FROM workflow.jobs WHERE id IN ($s1, $s2, $f1)}),
	'succeeded,succeeded,failed', 'the other finished jobs stay as they were');
is($dst->q('SELECT count(*) FROM workflow.target_locks'), '0', 'no target is held at the end');
is($dst->q(q{SELECT count(*) FROM workflow.jobs WHERE execution NOT IN ('succeeded', 'failed', 'canceled')}),
	'0', 'every job finished');

###############################################################################
# pg_cron: the restored schedule fires once pointed at the new server
###############################################################################

if ($have_cron)
{
	$src->stop;
	$dst->q(q{UPDATE cron.job SET nodename = current_setting('cron.host'), nodeport = current_setting('port')::int
               WHERE jobname LIKE 'workflow:%'});
	is($dst->q_as('alice', q{SELECT workflow.schedule('nightly', '* * * * *', 'calc', '{"n": 7}')}),
		$cron_id, 'alice changes the restored schedule to every minute (the same pg_cron job)');
	# pg_cron fires at the next full minute; give it two and a half
	{
		local $PostgreSQL::Test::Utils::timeout_default = 150;
		ok( $dst->poll_query_until(
				'postgres',
				q{SELECT EXISTS (SELECT 1 FROM workflow.jobs WHERE params = '{"n": 7}' AND execution = 'succeeded')}),
			'the restored schedule created a job in the new cluster, which ran');
	}
	is( $dst->q(q{SELECT created_by::text || ':' || result FROM workflow.jobs
                   WHERE params = '{"n": 7}' AND execution = 'succeeded' ORDER BY id LIMIT 1}),
		'alice:21', 'the job is alice\'s, of calc version 2');
}
else
{
	$src->stop;
}

my @bad = $dst->log_lines(qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'target server log: no PANIC, FATAL or crashed backend');

$dst->stop;
done_testing();
