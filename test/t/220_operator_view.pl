# 220_operator_view.pl: what an operator sees of the background workers, and
# tasks that write tables with deferred foreign keys (README "How jobs run",
# "Operations" and "Configuration").
#
# carol is a LOGIN role, member of workflow_admin and no superuser; alice a
# member of workflow_user; wally of workflow_worker.  One runner.
#
# (1) Deferred foreign keys.  alice's table shop.orders references
#     shop.customers DEFERRABLE INITIALLY DEFERRED.  Three jobs of her
#     workflow, created in one transaction (one batch of the runner), each
#     insert an order: the two valid ones succeed, their rows there; the one
#     naming a missing customer fails -- only that job -- with SQLSTATE
#     23503 recorded in its task run, and its row is not there.  An order
#     and its new customer inserted by one statement (a CTE) succeed.
# (2) runner_status read by carol, who may not see in pg_stat_activity when
#     the workers' backends started: the runner and the sweeper are alive
#     (and so for alice); a row of an in-server worker whose process is not
#     there is not alive.
# (3) The sweeper prunes external runners: with workflow.runner_retention
#     at its default (1d), a runner id silent for 2 days that holds no job
#     goes; one as silent that holds a running task stays, and so do one
#     silent for 2 hours and a recent one.  With workflow.runner_retention =
#     '1h' (ALTER SYSTEM, reload) the one silent for 2 hours goes too; the
#     one holding a task goes once its job is canceled.  A pruned worker
#     polls again and has its id back.
# (4) A runner count the server cannot start: with max_worker_processes = 4
#     and workflow.runners = 4 (restart), carol sees in runner_status every
#     runner that could not be started as a row, not alive, with a problem
#     naming max_worker_processes, and the others alive; together the four
#     runners.  With workflow.runners = 1 (reload) those rows are gone;
#     with max_worker_processes = 16 (restart) all four run.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('operators', settings => { 'workflow.runners' => 1 });

$node->create_role('alice', 'workflow_user');
$node->create_role('carol', 'workflow_admin');
$node->create_role('wally', 'workflow_worker');

###############################################################################
# (1) deferred foreign keys
###############################################################################

$node->q('CREATE SCHEMA shop AUTHORIZATION alice');
$node->q_as('alice', q{
CREATE TABLE shop.customers (id int PRIMARY KEY);
CREATE TABLE shop.orders (id int PRIMARY KEY,
                          customer int REFERENCES shop.customers DEFERRABLE INITIALLY DEFERRED);
INSERT INTO shop.customers VALUES (1);
});
is( $node->q(q{SELECT condeferrable AND condeferred FROM pg_constraint WHERE conname = 'orders_customer_fkey'}),
	't', 'fk: the foreign key is DEFERRABLE INITIALLY DEFERRED');
$node->create_workflow(q{{"name": "order", "search_path": "shop", "chain": [
  {"name": "insert", "sql": "insert into orders values (($1->'job'->'params'->>'id')::int, ($1->'job'->'params'->>'customer')::int) returning id"}]}},
	as => 'alice');
$node->create_workflow(q{{"name": "order_new_customer", "search_path": "shop", "chain": [
  {"name": "insert", "sql": "with o as (insert into orders values (20, 2) returning customer) insert into customers select customer from o returning id"}]}},
	as => 'alice');

my ($ok1, $bad, $ok2) = split /\n/, $node->q_as('alice', q{
BEGIN;
SELECT workflow.create_job('order', '{"id": 10, "customer": 1}');
SELECT workflow.create_job('order', '{"id": 11, "customer": 99}');
SELECT workflow.create_job('order', '{"id": 12, "customer": 1}');
COMMIT;
});
is($node->wait_state($ok1), 'succeeded', 'fk: the job of a valid order succeeded');
is($node->wait_state($bad), 'failed', 'fk: the job of an order of a missing customer failed');
is($node->wait_state($ok2), 'succeeded', 'fk: the other valid order of the batch succeeded too');
is( $node->q(
		"SELECT status || ' ' || (error->>'sqlstate') || ' ' || (error->>'message') FROM workflow.task_runs WHERE job_id = $bad"),
	'failed 23503 insert or update on table "orders" violates foreign key constraint "orders_customer_fkey"',
	'fk: its task run failed with SQLSTATE 23503, the violation');
is($node->runs($ok1) . ' / ' . $node->runs($ok2), 'insert:succeeded / insert:succeeded',
	'fk: the valid jobs have one successful run each');
is($node->q('SELECT string_agg(id::text, \',\' ORDER BY id) FROM shop.orders'), '10,12',
	'fk: the valid orders are there, the violating one is not');
my $j = $node->q_as('alice', q{SELECT workflow.create_job('order_new_customer')});
is($node->wait_state($j), 'succeeded', 'fk: an order and its new customer inserted by one statement succeed');
is($node->q('SELECT count(*) FROM shop.orders WHERE id = 20 AND customer = 2'), '1', 'fk: that order is there');

###############################################################################
# (2) liveness as an administrator sees it
###############################################################################

ok( $node->poll_for(
		q{SELECT count(*) = 2 FROM workflow.runner_status WHERE id IN ('runner-1', 'sweeper') AND alive}, 't', 60),
	'liveness: the superuser sees the runner and the sweeper alive');
my $worker_pids = $node->q(
	q{SELECT string_agg(pid::text, ',') FROM pg_stat_activity
       WHERE backend_type IN ('workflow runner', 'workflow sweeper')});
is( $node->q_as('carol',
		qq{SELECT count(*) || '/' || count(backend_start) FROM pg_stat_activity
            WHERE pid IN ($worker_pids)}),
	'2/0',
	'premise: carol sees the workers in pg_stat_activity, but not when they started');
is( $node->q_as('carol',
		q{SELECT string_agg(id || ' ' || kind || ' ' || alive, ', ' ORDER BY id) FROM workflow.runner_status}),
	'runner-1 runner true, sweeper sweeper true',
	'liveness: carol sees the runner and the sweeper alive');
is( $node->q_as('alice',
		q{SELECT string_agg(id || ' ' || alive, ', ' ORDER BY id) FROM workflow.runner_status}),
	'runner-1 true, sweeper true',
	'liveness: so does alice');
$node->q(q{INSERT INTO workflow.runners (id, kind, pid, owner)
           VALUES ('runner-9', 'runner', 999999, 'postgres')});
is($node->q_as('carol', q{SELECT alive FROM workflow.runner_status WHERE id = 'runner-9'}), 'f',
	'liveness: a row of an in-server worker whose process is not there is not alive');
$node->q(q{DELETE FROM workflow.runners WHERE id = 'runner-9'});

###############################################################################
# (3) the sweeper prunes external runners
###############################################################################

is($node->q('SHOW workflow.runner_retention'), '1d', 'prune: workflow.runner_retention is 1d by default');
# a lease of an hour: the task stays held however slow the machine
$node->create_workflow(q{{"name": "ext", "chain": [{"name": "e", "task_type": "ops.ext", "timeout": "1 hour"}]}},
	as => 'alice');
my $held = $node->q_as('alice', q{SELECT workflow.create_job('ext')});
$node->q_as('wally', q{
SELECT workflow.register_runner('ext-dead');
SELECT workflow.register_runner('ext-hours');
SELECT workflow.register_runner('ext-recent');
});
is($node->q_as('wally', q{SELECT job_id FROM workflow.poll_tasks('ops.ext', 'ext-busy', 1)}),
	$held, 'prune: ext-busy holds a task');
$node->q(q{
UPDATE workflow.runners SET active_at = now() - interval '2 days' WHERE id IN ('ext-dead', 'ext-busy');
UPDATE workflow.runners SET active_at = now() - interval '2 hours' WHERE id = 'ext-hours';
});
ok( $node->poll_for(q{SELECT count(*) = 0 FROM workflow.runners WHERE id = 'ext-dead'}, 't', 60),
	'prune: the sweeper removed the runner silent for 2 days that holds nothing');
ok($node->sweeper_passes(3), 'prune: the sweeper went on');
is( $node->q(q{SELECT string_agg(id, ',' ORDER BY id) FROM workflow.runners WHERE kind = 'external'}),
	'ext-busy,ext-hours,ext-recent',
	'prune: it kept the silent one that holds a task, the one silent for 2 hours and the recent one');

$node->q(q{ALTER SYSTEM SET workflow.runner_retention = '1h'});
$node->reload;
ok( $node->poll_for(q{SELECT count(*) = 0 FROM workflow.runners WHERE id = 'ext-hours'}, 't', 60),
	'prune: with workflow.runner_retention = 1h, the one silent for 2 hours goes too');
ok($node->sweeper_passes(3), 'prune: the sweeper went on');
is($node->q(q{SELECT count(*) FROM workflow.runners WHERE id = 'ext-busy'}), '1',
	'prune: the one holding a task stays');
is($node->q_as('carol', qq{SELECT workflow.cancel_job($held)}), 't', 'prune: carol cancels its job');
ok( $node->poll_for(q{SELECT count(*) = 0 FROM workflow.runners WHERE id = 'ext-busy'}, 't', 60),
	'prune: then it goes too');
is($node->q(q{SELECT string_agg(id, ',' ORDER BY id) FROM workflow.runners}),
	'ext-recent,runner-1,sweeper', 'prune: the recent one and the in-server workers are left');
$node->q_as('wally', q{SELECT count(*) FROM workflow.poll_tasks('ops.none', 'ext-dead')});
is($node->q(q{SELECT owner FROM workflow.runners WHERE id = 'ext-dead'}), 'wally',
	'prune: a pruned worker polls again and has its id back');
$node->q(q{ALTER SYSTEM RESET workflow.runner_retention});
$node->reload;

###############################################################################
# (4) runners the server cannot start
###############################################################################

$node->append_conf('postgresql.conf', "max_worker_processes = 4\nworkflow.runners = 4\n");
$node->restart;
my $counts = q{
SELECT count(*) FILTER (WHERE kind = 'runner' AND alive AND problem IS NULL) || ' alive, '
       || count(*) FILTER (WHERE kind = 'runner' AND NOT alive AND pid IS NULL
                             AND problem LIKE '%max_worker_processes (now 4)%') || ' not started, '
       || count(*) FILTER (WHERE kind = 'sweeper' AND alive) || ' sweeper'
  FROM workflow.runner_status};
ok( $node->poll_for(
		qq{SELECT c ~ '^[0-3] alive, [1-4] not started, 1 sweeper\$'
                  AND split_part(c, ' ', 1)::int + split_part(c, ' ', 3)::int = 4
             FROM ($counts) s(c)}, 't', 60),
	'count: runner_status shows the runners that could not be started, and the others alive')
  or diag('runner_status: ' . $node->q($counts) . '; ' . $node->q(q{SELECT string_agg(id || ':' || kind || ':' || alive || ':' || coalesce(pid::text, '-') || ':' || coalesce(problem, '-'), ' | ') FROM workflow.runner_status}));
my $c = $node->q_as('carol', $counts);
note("runner_status as carol: $c");
like($c, qr/^[0-3] alive, [1-4] not started, 1 sweeper$/, 'count: carol sees the same');
like( $node->q_as('carol', q{SELECT problem FROM workflow.runner_status WHERE problem IS NOT NULL LIMIT 1}),
	qr/^not started: no background worker slot free; raise max_worker_processes \(now 4\) or lower workflow\.runners$/,
	'count: the problem says what to change');

$node->q(q{ALTER SYSTEM SET workflow.runners = 1});
$node->reload;
ok( $node->poll_for(q{SELECT count(*) = 0 FROM workflow.runner_status WHERE problem IS NOT NULL}, 't', 60),
	'count: with workflow.runners = 1 no runner is missing');
is($node->q_as('carol', q{SELECT alive FROM workflow.runner_status WHERE id = 'runner-1'}), 't',
	'count: runner-1 runs');

$node->q(q{ALTER SYSTEM RESET workflow.runners});
$node->append_conf('postgresql.conf', "max_worker_processes = 16\n");
$node->restart;
ok( $node->poll_for(
		q{SELECT count(*) FILTER (WHERE kind = 'runner' AND alive) = 4
                 AND count(*) FILTER (WHERE problem IS NOT NULL) = 0
            FROM workflow.runner_status}, 't', 60),
	'count: with max_worker_processes = 16 the four runners run');

done_testing();
