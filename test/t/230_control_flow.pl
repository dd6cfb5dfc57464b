# 230_control_flow.pl: control-flow entries (parallel, switch, sub-workflows,
# foreach, signals) run by the in-server runners (README "Control flow").
#
# (1) An order workflow: parallel fraud and stock checks, a switch that
#     waits for a signal for big orders (sent by a trigger on an
#     application table when a row is approved) and approves small ones
#     at once, a sub-workflow that ships, a foreach that notifies per item;
#     both orders finish with the right result, and no signal is left kept.
# (2) A foreach of 10,000 no-op SQL children with concurrency 10: the
#     output is the 10,000 items in item order, never more than 10 children
#     run at once (their task runs' intervals), and every child succeeded
#     with exactly one task run.
# (3) A tree of sub-workflows three levels deep (A starts B starts C): C's
#     result reaches A.
# (4) A failing branch with fail_fast: its sibling (a sub-workflow that
#     sleeps) is canceled and its oncancel chain runs once; the parent's
#     onerror chain runs once, and the parent fails.
# (5) cancel_job of a parent in the middle of a fan-out cancels every child
#     in progress (running ones and ones waiting for their turn).
# (6) kill -9 of a runner in the middle of a fan-out: after the restart the
#     fan-out finishes, every item's output is there once, no child has two
#     succeeded runs and no effect is duplicated.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use WorkflowNode;

my $node = WorkflowNode->create('control_flow',
	settings => { restart_after_crash => 'on', 'workflow.runners' => '4' });

ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '4', 60),
	'four runners are up');

# Wait until job $id has finished; true if it did.
sub wait_done
{
	my ($id, $seconds) = @_;
	return $node->poll_for(
		"SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $id",
		't', $seconds // 180);
}

###############################################################################
# (1) the order workflow
###############################################################################

$node->q(
	q{
CREATE TABLE public.orders (id int PRIMARY KEY, amount numeric NOT NULL, approved boolean NOT NULL DEFAULT false);
CREATE TABLE public.shipments (order_id int NOT NULL);
CREATE TABLE public.notifications (order_id int NOT NULL, item text NOT NULL);
CREATE FUNCTION public.orders_approved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM workflow.signal('order-' || NEW.id, jsonb_build_object('approved_by', 'manager', 'order', NEW.id));
    RETURN NULL;
END $$;
CREATE TRIGGER orders_approved AFTER UPDATE OF approved ON public.orders
    FOR EACH ROW WHEN (NEW.approved AND NOT OLD.approved) EXECUTE FUNCTION public.orders_approved();
});

$node->create_workflow(
	q{{"name": "ship", "chain": [
  {"name": "label", "sql": "insert into shipments values (($1->'job'->'params'->>'order')::int); select jsonb_build_object('tracking', 'T' || ($1->'job'->'params'->>'order'), 'parent_entry', $1->'parent'->>'entry')"}]}});
$node->create_workflow(
	q{{"name": "order", "chain": [
  {"name": "checks", "parallel": {
     "fraud": [{"name": "fraud_score", "sql": "select jsonb_build_object('ok', ($1->'job'->'params'->>'amount')::numeric < 100000)"}],
     "stock": [{"name": "stock_check", "sql": "select jsonb_build_object('reserved', jsonb_array_length($1->'job'->'params'->'items'))"}]}},
  {"name": "route",
   "switch": "select case when ($1->'job'->'params'->>'amount')::numeric > 1000 then 'big' else 'small' end",
   "cases": {
     "big": [{"name": "approval", "wait": "signal", "key": "select 'order-' || ($1->'job'->'params'->>'order')", "timeout": "10 min"}],
     "small": [{"name": "auto", "sql": "select jsonb_build_object('approved_by', 'auto', 'fraud', $1->'results'->'checks'->'fraud')"}]}},
  {"name": "shipping", "workflow": "ship", "params": "select jsonb_build_object('order', $1->'job'->'params'->'order')"},
  {"name": "notify", "foreach": "select $1->'job'->'params'->'items'", "concurrency": 2,
   "do": [{"name": "mail", "sql": "insert into notifications values (($1->'job'->'params'->>'order')::int, $1->>'item'); select upper($1->>'item')"}]},
  {"name": "done", "sql": "select jsonb_build_object('checks', $1->'results'->'checks', 'route', $1->'results'->'route', 'shipping', $1->'results'->'shipping', 'notify', $1->'results'->'notify')"}]}}
);

$node->q(q{INSERT INTO orders VALUES (1, 50), (2, 5000)});
my $small = $node->create_job('order', '{"order": 1, "amount": 50, "items": ["a", "b", "c"]}');
my $big = $node->create_job('order', '{"order": 2, "amount": 5000, "items": ["x", "y"]}');

ok(wait_done($small), 'order: the small order finished');
is( $node->q(
		qq{SELECT result = '{"checks": {"fraud": {"ok": true}, "stock": {"reserved": 3}},
                    "route": {"approved_by": "auto", "fraud": {"ok": true}},
                    "shipping": {"tracking": "T1", "parent_entry": "shipping"},
                    "notify": ["A", "B", "C"]}'::jsonb
             FROM workflow.jobs WHERE id = $small AND execution = 'succeeded'}),
	't',
	'order: the small order succeeded with the result of every entry')
  or diag($node->q("SELECT execution, result, error FROM workflow.jobs WHERE id = $small"));

# the big order waits for its approval, in the child of case "big"
ok( $node->poll_for(
		qq{SELECT count(*) = 1 FROM workflow.jobs
            WHERE root_id = $big AND execution = 'waiting' AND waiting_for = 'signal' AND signal_key = 'order-2'},
		't', 120),
	'order: the big order waits for the signal order-2');
is($node->q("SELECT execution || ' ' || waiting_for FROM workflow.jobs WHERE id = $big"),
	'waiting children', 'order: the big order waits for its switch child');
is($node->q("SELECT count(*) FROM shipments WHERE order_id = 2"), '0', 'order: nothing shipped before the approval');

# the application approves the order: the trigger signals
$node->q(q{UPDATE orders SET approved = true WHERE id = 2});
ok(wait_done($big), 'order: the big order finished after the approval');
is( $node->q(
		qq{SELECT result = '{"checks": {"fraud": {"ok": true}, "stock": {"reserved": 2}},
                    "route": {"approved_by": "manager", "order": 2},
                    "shipping": {"tracking": "T2", "parent_entry": "shipping"},
                    "notify": ["X", "Y"]}'::jsonb
             FROM workflow.jobs WHERE id = $big AND execution = 'succeeded'}),
	't',
	'order: the big order succeeded, the approval carrying the payload of the signal')
  or diag($node->q("SELECT execution, result, error FROM workflow.jobs WHERE id = $big"));
is($node->q('SELECT count(*) FROM workflow.signals'), '0', 'order: the signal resumed the job and was not kept');
is($node->q('SELECT string_agg(order_id::text, \',\' ORDER BY order_id) FROM shipments'),
	'1,2', 'order: each order shipped once');
is($node->q(q{SELECT string_agg(order_id || item, ',' ORDER BY order_id, item) FROM notifications}),
	'1a,1b,1c,2x,2y', 'order: one notification per item');
is( $node->q(
		qq{SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
            WHERE j.root_id IN ($small, $big) AND r.status <> 'succeeded'}),
	'0',
	'order: no task run of either tree other than succeeded');

###############################################################################
# (2) a foreach of 10,000 children, 10 at a time
###############################################################################

$node->create_workflow(
	q{{"name": "fan", "chain": [
  {"name": "each", "foreach": "select jsonb_agg(g) from generate_series(1, 10000) g", "concurrency": 10,
   "do": [{"name": "noop", "sql": "select $1->'item'"}]}]}});
my $fan = $node->create_job('fan');
# until the job ends, the children running at once, in committed states
# sampled as it goes (each sample is one snapshot)
my ($max_running, $samples, $fan_done) = (0, 0, 0);
my $fan_deadline = time() + 900;
while (time() < $fan_deadline)
{
	my ($running, $ended) = split /\|/, $node->q(
		qq{SELECT count(*) FILTER (WHERE c.execution = 'running'),
                  (SELECT execution IN ('succeeded', 'failed', 'canceled') FROM workflow.jobs WHERE id = $fan)
             FROM workflow.jobs c WHERE c.parent_id = $fan});
	$samples++;
	$max_running = $running if $running > $max_running;
	if ($ended eq 't') { $fan_done = 1; last; }
	usleep(20_000);
}
ok($fan_done, 'fan: the job finished');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $fan"), 'succeeded', 'fan: the job succeeded');
is( $node->q(
		qq{SELECT result = (SELECT jsonb_agg(g ORDER BY g) FROM generate_series(1, 10000) g)
             FROM workflow.jobs WHERE id = $fan}),
	't',
	'fan: the output is the 10,000 items in item order');
is( $node->q(
		qq{SELECT count(*), count(*) FILTER (WHERE execution = 'succeeded'),
                  count(DISTINCT child_index), min(child_index), max(child_index)
             FROM workflow.jobs WHERE parent_id = $fan}),
	'10000|10000|10000|0|9999',
	'fan: 10,000 children, one per item, all succeeded');
is( $node->q(
		qq{SELECT count(*), count(DISTINCT r.job_id), count(*) FILTER (WHERE r.status = 'succeeded')
             FROM workflow.task_runs r JOIN workflow.jobs c ON c.id = r.job_id WHERE c.parent_id = $fan}),
	'10000|10000|10000',
	'fan: every child succeeded with exactly one task run');

note("fan: at most $max_running children running at once in $samples samples");
cmp_ok($max_running, '<=', 10, 'fan: never more than 10 children running at once');
cmp_ok($max_running, '>=', 2, 'fan: children ran side by side');

###############################################################################
# (3) a tree of sub-workflows: A starts B starts C
###############################################################################

$node->create_workflow(
	q{{"name": "tree_c", "chain": [{"name": "c1", "sql": "select jsonb_build_object('from', 'C', 'param', $1->'job'->'params'->'x', 'parent', $1->'parent'->>'entry')"}]}});
$node->create_workflow(
	q{{"name": "tree_b", "chain": [{"name": "callc", "workflow": "tree_c", "params": "select jsonb_build_object('x', ($1->'job'->'params'->>'x')::int * 10)"}]}});
$node->create_workflow(
	q{{"name": "tree_a", "chain": [{"name": "callb", "workflow": "tree_b"},
  {"name": "out", "sql": "select jsonb_build_object('a', $1->'results'->'callb')"}]}});
my $tree = $node->create_job('tree_a', '{"x": 4}');
ok(wait_done($tree), 'tree: A finished');
is($node->q("SELECT execution || ' ' || result::text FROM workflow.jobs WHERE id = $tree"),
	'succeeded {"a": {"from": "C", "param": 40, "parent": "callc"}}',
	"tree: C's result reached A through B");
is( $node->q(
		qq{SELECT string_agg(j.workflow || ':' || j.execution || ':' || coalesce(p.workflow, '-'), ' ' ORDER BY j.id)
             FROM workflow.jobs j LEFT JOIN workflow.jobs p ON p.id = j.parent_id
            WHERE j.root_id = $tree}),
	'tree_a:succeeded:- tree_b:succeeded:tree_a tree_c:succeeded:tree_b',
	'tree: three levels, each the child of the one above, all with root A');

###############################################################################
# (4) a failing branch with fail_fast
###############################################################################

$node->q(q{CREATE TABLE public.fx (what text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())});
$node->create_workflow(
	q{{"name": "slowwf",
  "chain": [{"name": "mark", "sql": "insert into fx (what) values ('slow started')"},
            {"name": "nap", "sql": "select pg_sleep(120)"}],
  "oncancel": [{"name": "undo", "sql": "insert into fx (what) values ('slow oncancel')"}]}});
# the failing branch waits (inside its task) until the sibling has started
$node->create_workflow(
	q{{"name": "failfast", "chain": [
  {"name": "both", "parallel": {
     "bad": [{"name": "boom", "sql": "do $$ begin for i in 1..2400 loop exit when exists (select 1 from fx where what = 'slow started'); perform pg_sleep(0.05); end loop; end $$; select 1 / 0"}],
     "slow": [{"name": "slowsub", "workflow": "slowwf"}]},
   "fail_fast": true},
  {"name": "never", "sql": "insert into fx (what) values ('never')"}],
  "onerror": [{"name": "cleanup", "sql": "insert into fx (what) values ('parent onerror')"}]}});
my $ff = $node->create_job('failfast');
ok(wait_done($ff), 'failfast: the parent finished');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $ff"), 'failed', 'failfast: the parent failed');
my $slowsub = $node->q("SELECT id FROM workflow.jobs WHERE root_id = $ff AND workflow = 'slowwf'");
ok(wait_done($slowsub), 'failfast: the sibling sub-workflow finished');
is( $node->q(
		qq{SELECT string_agg(coalesce(c.branch, '-') || ':' || c.execution, ' ' ORDER BY c.child_index)
             FROM workflow.jobs c WHERE c.parent_id = $ff}),
	'bad:failed slow:canceled',
	'failfast: the failing branch failed, its sibling was canceled');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $slowsub"),
	'canceled', "failfast: the sibling's sub-workflow was canceled");
ok( $node->poll_for(
		qq{SELECT count(*) = 0 FROM pg_stat_activity
            WHERE backend_type = 'workflow runner' AND state = 'active'
              AND query LIKE 'workflow job $slowsub:%'},
		't', 60),
	"failfast: the runner no longer executes the canceled sub-workflow's task");
is( $node->q(q{SELECT string_agg(what || '=' || n, ',' ORDER BY what) FROM (SELECT what, count(*) n FROM fx GROUP BY what) s}),
	'parent onerror=1,slow oncancel=1,slow started=1',
	"failfast: the sibling's oncancel ran once, the parent's onerror once, the entry after never");

###############################################################################
# (5) cancel_job of a parent in the middle of a fan-out
###############################################################################

$node->create_workflow(q{{"name": "sleepy", "chain": [{"name": "z", "sql": "select pg_sleep(120)"}]}});
$node->create_workflow(
	q{{"name": "fanc", "chain": [
  {"name": "each", "foreach": "select jsonb_agg(jsonb_build_object('n', g)) from generate_series(1, 20) g",
   "concurrency": 3, "do": {"workflow": "sleepy"}}]}});
my $fanc = $node->create_job('fanc');
ok( $node->poll_for(
		qq{SELECT count(*) FROM pg_stat_activity a JOIN workflow.jobs c ON a.query LIKE 'workflow job ' || c.id || ':%'
            WHERE c.parent_id = $fanc AND a.backend_type = 'workflow runner' AND a.wait_event = 'PgSleep'},
		'3', 120),
	'cancel: three children sleep in their task');
is( $node->q(
		qq{SELECT count(*) FILTER (WHERE execution = 'running') || ' ' || count(*) FILTER (WHERE waiting_for = 'turn')
             FROM workflow.jobs WHERE parent_id = $fanc}),
	'3 17',
	'cancel: 3 children running, 17 waiting for their turn');
is($node->q("SELECT workflow.cancel_job($fanc, 'test')"), 't', 'cancel: cancel_job of the parent');
ok( $node->poll_for(
		qq{SELECT count(*) = 0 FROM workflow.jobs
            WHERE root_id = $fanc AND execution NOT IN ('succeeded', 'failed', 'canceled')},
		't', 120),
	'cancel: every job of the tree ended');
is( $node->q(qq{SELECT execution, count(*) FROM workflow.jobs WHERE parent_id = $fanc GROUP BY 1}),
	'canceled|20', 'cancel: all 20 children canceled');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $fanc"), 'canceled', 'cancel: the parent is canceled');
ok( $node->poll_for(
		qq{SELECT count(*) = 0 FROM pg_stat_activity a JOIN workflow.jobs c ON a.query LIKE 'workflow job ' || c.id || ':%'
            WHERE c.parent_id = $fanc AND a.backend_type = 'workflow runner' AND a.state = 'active'},
		't', 60),
	'cancel: no runner still executes a canceled child')
  or diag($node->q(q{SELECT string_agg(query || ' ' || coalesce(wait_event, '-'), '; ') FROM pg_stat_activity WHERE backend_type = 'workflow runner'}));

###############################################################################
# (6) kill -9 of a runner in the middle of a fan-out
###############################################################################

$node->q(q{CREATE TABLE public.cfx (item int NOT NULL, attempt int NOT NULL)});
$node->q(q{CREATE TABLE public.flush (x int)});
# item 5 sleeps on its first attempt; on_stale retry: the child that was
# executing runs again after the crash
$node->create_workflow(
	q{{"name": "fancrash", "on_stale": "retry", "chain": [
  {"name": "each", "foreach": "select jsonb_agg(g) from generate_series(1, 30) g", "concurrency": 4,
   "do": [{"name": "work", "sql": "insert into cfx values (($1->>'item')::int, ($1->'task'->>'attempt')::int); select pg_sleep(case when ($1->>'item')::int = 5 and ($1->'task'->>'attempt')::int = 1 then 120 else 0 end); select ($1->>'item')::int * 2"}]}]}});
my $fcr = $node->create_job('fancrash');
ok( $node->poll_for(qq{SELECT count(*) = 1 FROM workflow.jobs WHERE parent_id = $fcr AND item = '5'}, 't', 60),
	'crash: the child of item 5 exists');
my $c5 = $node->q(qq{SELECT id FROM workflow.jobs WHERE parent_id = $fcr AND item = '5'});
my $pid = $node->sleeping_runner($c5);
ok($pid, "crash: a runner executes the child of item 5 (job $c5)");
$node->q('INSERT INTO flush VALUES (1)');
my $offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
ok($node->poll_for('SELECT 1', '1', 60), 'crash: the server is back');

ok(wait_done($fcr, 300), 'crash: the fan-out finished after the restart');
is($node->q("SELECT execution FROM workflow.jobs WHERE id = $fcr"), 'succeeded', 'crash: the parent succeeded')
  or diag($node->q("SELECT error FROM workflow.jobs WHERE id = $fcr"));
is( $node->q(
		qq{SELECT result = (SELECT jsonb_agg(g * 2 ORDER BY g) FROM generate_series(1, 30) g)
             FROM workflow.jobs WHERE id = $fcr}),
	't',
	"crash: every item's output is there once, in item order");
is( $node->q(
		qq{SELECT count(*) FROM (SELECT r.job_id FROM workflow.task_runs r JOIN workflow.jobs c ON c.id = r.job_id
                                 WHERE c.parent_id = $fcr AND r.status = 'succeeded'
                                 GROUP BY r.job_id HAVING count(*) > 1) s}),
	'0',
	'crash: no child has two succeeded runs');
is( $node->q(
		qq{SELECT count(*) FILTER (WHERE execution = 'succeeded') FROM workflow.jobs WHERE parent_id = $fcr}),
	'30',
	'crash: all 30 children succeeded');
is( $node->q(q{SELECT count(*), count(DISTINCT item) FROM cfx}),
	'30|30',
	'crash: one effect per item, the killed attempt rolled back');
is($node->q(q{SELECT attempt FROM cfx WHERE item = 5}), '2', 'crash: item 5 ran again, at attempt 2');

done_testing();
