# 070_pg_cron.pl: a schedule made with workflow.schedule() really fires
# (README "Operations", schedules): pg_cron 1.4 runs the
# scheduled command as the role that scheduled it, the command creates a
# job of that role, the runners execute it as that role.
#
# dora is a LOGIN role, member of workflow_user, with USAGE on schema cron
# (what the README tells an administrator to grant).  She stores a workflow
# whose only task returns current_user and schedules it every minute.  pg_cron
# fires on the minute, so the test waits (polling, at most ~150 s) for:
#   - a job of that workflow to exist and succeed;
#   - its created_by to be dora and its task output to be "dora" (the task
#     ran as dora, not as the superuser pg_cron or the runners connect as);
#   - workflow.schedules to show the run with last_run_status 'succeeded'.
# Then she unschedules it and the schedule is gone from pg_cron.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('pg_cron');
$node->init;
my $host = $node->host;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'workflow,pg_cron'
max_worker_processes = 16
cron.database_name = 'postgres'
# pg_cron connects with libpq: through this node's socket directory
cron.host = '$host'
workflow.database = 'postgres'
workflow.runners = 2
workflow.run_interval = '50ms'
workflow.activity_interval = '100ms'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
$node->safe_psql('postgres', 'CREATE EXTENSION workflow');

sub q1
{
	return $node->safe_psql('postgres', $_[0]);
}

sub as_dora
{
	return $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'dora' ]);
}

q1(q{
CREATE ROLE dora LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT workflow_user TO dora;
GRANT USAGE ON SCHEMA cron TO dora;
});
is(q1("SELECT rolsuper FROM pg_roles WHERE rolname = 'dora'"), 'f', 'dora is not a superuser');

is( as_dora(
		q{SELECT workflow.create_workflow('{"name": "cron_who", "chain": [{"name": "who", "sql": "select current_user::text"}]}')}
	),
	'1',
	'dora stores the workflow');

my $cron_id = as_dora(q{SELECT workflow.schedule('every-minute', '* * * * *', 'cron_who', '{"from": "cron"}')});
like($cron_id, qr/^\d+$/, "dora schedules it every minute (pg_cron job $cron_id)");
is(q1("SELECT username FROM cron.job WHERE jobid = $cron_id"), 'dora', 'pg_cron records the schedule as dora\'s');
is( as_dora(q{SELECT format('%s|%s|%s|%s', name, cron, workflow, params) FROM workflow.schedules}),
	'every-minute|* * * * *|cron_who|{"from": "cron"}',
	'dora sees her schedule in workflow.schedules');
is(as_dora(q{SELECT next_run > now() AND next_run <= now() + interval '1 minute' FROM workflow.schedules}),
	't', 'its next run is within the minute');

# pg_cron fires at the next full minute; give it two and a half
{
	local $PostgreSQL::Test::Utils::timeout_default = 150;
	ok( $node->poll_query_until(
			'postgres',
			q{SELECT EXISTS (SELECT 1 FROM workflow.jobs WHERE workflow = 'cron_who' AND execution = 'succeeded')}),
		'a job created by the schedule ran and succeeded');
}
my $job = q1(
	q{SELECT min(id) FROM workflow.jobs WHERE workflow = 'cron_who' AND execution = 'succeeded'});
note("job $job, created at "
	  . q1("SELECT created_at FROM workflow.jobs WHERE id = $job"));
is(q1("SELECT created_by::text FROM workflow.jobs WHERE id = $job"),
	'dora', 'the job was created by dora (pg_cron ran the command as her)');
is(q1("SELECT params::text FROM workflow.jobs WHERE id = $job"),
	'{"from": "cron"}', 'with the scheduled params');
is( q1(
		"SELECT output #>> '{}' FROM workflow.task_runs WHERE job_id = $job AND task = 'who' AND status = 'succeeded'"
	),
	'dora',
	'its task ran as dora, not as a superuser');
is(as_dora("SELECT workflow.get_job($job)->>'execution'"), 'succeeded', 'dora sees her job through get_job');
is(q1("SELECT count(*) FROM workflow.jobs WHERE workflow = 'cron_who' AND created_by <> 'dora'::regrole"),
	'0', 'no job of the schedule belongs to anyone else');

# pg_cron writes its run record after the command's transaction
{
	local $PostgreSQL::Test::Utils::timeout_default = 60;
	ok( $node->poll_query_until(
			'postgres',
			q{SELECT last_run_status = 'succeeded' FROM workflow.schedules WHERE name = 'every-minute'}),
		'workflow.schedules shows the last run as succeeded');
}
is( as_dora(
		q{SELECT last_run_status || ' ' || (last_run_finished >= last_run_started) FROM workflow.schedules WHERE name = 'every-minute'}
	),
	'succeeded true',
	'dora sees the last run of her schedule');
is(q1("SELECT count(*) FROM cron.job_run_details WHERE jobid = $cron_id AND status = 'failed'"),
	'0', 'pg_cron recorded no failed run');

as_dora(q{SELECT workflow.unschedule('every-minute')});
is(q1("SELECT count(*) FROM cron.job WHERE jobid = $cron_id"), '0', 'unschedule removes the pg_cron job');
is(as_dora('SELECT count(*) FROM workflow.schedules'), '0', 'and workflow.schedules no longer shows it');

my $log = slurp_file($node->logfile);
my @bad = grep { /\b(PANIC):|server process .* terminated|terminated by signal/ } split /\n/, $log;
is_deeply(\@bad, [], 'server log: no PANIC or crashed backend');

$node->stop;

done_testing();
