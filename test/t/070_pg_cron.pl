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

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# pg_cron preloaded too; it connects with libpq through this node's socket
# directory (cron.host)
my $node = WorkflowNode->create('pg_cron',
	pg_cron => 1,
	settings => { 'workflow.stale_after' => undef });

$node->create_role('dora', 'workflow_user');
$node->q('GRANT USAGE ON SCHEMA cron TO dora');
is($node->q("SELECT rolsuper FROM pg_roles WHERE rolname = 'dora'"), 'f', 'dora is not a superuser');

is( $node->q_as('dora',
		q{SELECT workflow.create_workflow('{"name": "cron_who", "chain": [{"name": "who", "sql": "select current_user::text"}]}')}
	),
	'1',
	'dora stores the workflow');

my $cron_id = $node->q_as('dora', q{SELECT workflow.schedule('every-minute', '* * * * *', 'cron_who', '{"from": "cron"}')});
like($cron_id, qr/^\d+$/, "dora schedules it every minute (pg_cron job $cron_id)");
is($node->q("SELECT username FROM cron.job WHERE jobid = $cron_id"), 'dora', 'pg_cron records the schedule as dora\'s');
is( $node->q_as('dora', q{SELECT format('%s|%s|%s|%s', name, cron, workflow, params) FROM workflow.schedules}),
	'every-minute|* * * * *|cron_who|{"from": "cron"}',
	'dora sees her schedule in workflow.schedules');
is($node->q_as('dora', q{SELECT next_run > now() AND next_run <= now() + interval '1 minute' FROM workflow.schedules}),
	't', 'its next run is within the minute');

# pg_cron fires at the next full minute; give it two and a half
{
	local $PostgreSQL::Test::Utils::timeout_default = 150;
	ok( $node->poll_query_until(
			'postgres',
			q{SELECT EXISTS (SELECT 1 FROM workflow.jobs WHERE workflow = 'cron_who' AND execution = 'succeeded')}),
		'a job created by the schedule ran and succeeded');
}
my $job = $node->q(
	q{SELECT min(id) FROM workflow.jobs WHERE workflow = 'cron_who' AND execution = 'succeeded'});
note("job $job, created at "
	  . $node->q("SELECT created_at FROM workflow.jobs WHERE id = $job"));
is($node->q("SELECT created_by::text FROM workflow.jobs WHERE id = $job"),
	'dora', 'the job was created by dora (pg_cron ran the command as her)');
is($node->q("SELECT params::text FROM workflow.jobs WHERE id = $job"),
	'{"from": "cron"}', 'with the scheduled params');
is( $node->q(
		"SELECT output #>> '{}' FROM workflow.task_runs WHERE job_id = $job AND task = 'who' AND status = 'succeeded'"
	),
	'dora',
	'its task ran as dora, not as a superuser');
is($node->q_as('dora', "SELECT workflow.get_job($job)->>'execution'"), 'succeeded', 'dora sees her job through get_job');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE workflow = 'cron_who' AND created_by <> 'dora'::regrole"),
	'0', 'no job of the schedule belongs to anyone else');

# pg_cron writes its run record after the command's transaction
{
	local $PostgreSQL::Test::Utils::timeout_default = 60;
	ok( $node->poll_query_until(
			'postgres',
			q{SELECT last_run_status = 'succeeded' FROM workflow.schedules WHERE name = 'every-minute'}),
		'workflow.schedules shows the last run as succeeded');
}
is( $node->q_as('dora',
		q{SELECT last_run_status || ' ' || (last_run_finished >= last_run_started) FROM workflow.schedules WHERE name = 'every-minute'}
	),
	'succeeded true',
	'dora sees the last run of her schedule');
is($node->q("SELECT count(*) FROM cron.job_run_details WHERE jobid = $cron_id AND status = 'failed'"),
	'0', 'pg_cron recorded no failed run');

$node->q_as('dora', q{SELECT workflow.unschedule('every-minute')});
is($node->q("SELECT count(*) FROM cron.job WHERE jobid = $cron_id"), '0', 'unschedule removes the pg_cron job');
is($node->q_as('dora', 'SELECT count(*) FROM workflow.schedules'), '0', 'and workflow.schedules no longer shows it');

my @bad = $node->log_lines(qr/\b(PANIC):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'server log: no PANIC or crashed backend');

$node->stop;

done_testing();
