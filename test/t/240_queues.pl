# 240_queues.pl: queue limits as the in-server runners apply them (README
# "Queues").
#
# (1) A slow queue (concurrency 1) with two 3-second tasks does not delay a
#     trivial job of the default queue created just after them: with two
#     runners, one runs the first slow job, the second slow job waits in
#     its queue, and the other runner starts the trivial job at once.  The
#     two slow jobs never run at the same time.
# (2) A rate limit of 100 per second over a backlog of 1,500 jobs: after
#     the bucket's first burst (it starts full), the runners start 100 jobs
#     a second: 1,000 in the 10 s from 1 s after the first start, within 5 %.
# (3) The quick start's orders run in creation order (examples/order.sql:
#     of two orders for the last lamp, the one created first gets it): jobs
#     created in one transaction with the same priority, claimed in one
#     batch by a single runner, run in the order of their ids; with
#     priorities, in claim order.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('queues', settings => { 'workflow.runners' => '2' });

ok($node->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '2', 60),
	'two runners are up');

###############################################################################
# (1) a slow queue does not delay the default queue
###############################################################################

$node->q(q{SELECT workflow.create_queue('slow', concurrency => 1)});
$node->create_workflow(
	q{{"name": "slow_job", "queue": "slow", "chain": [{"name": "nap", "sql": "select pg_sleep(3)"}]}});
$node->create_workflow(q{{"name": "trivial", "chain": [{"name": "a", "sql": "select 1"}]}});

# each in its own transaction: each commit wakes a runner
my $slow1 = $node->create_job('slow_job');
my $slow2 = $node->create_job('slow_job');
ok( $node->poll_for(
		"SELECT count(*) FROM workflow.jobs WHERE id IN ($slow1, $slow2) AND execution = 'running'",
		'1', 30),
	'(1) a slow job runs');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE queue = 'slow' AND execution = 'queued'"),
	'1', '(1) the other slow job waits in its queue (concurrency 1)');
my $quick = $node->create_job('trivial');
is($node->wait_state($quick), 'succeeded', '(1) the trivial job succeeded');
# Bound: an idle runner is woken by the commit (run_interval 50 ms at the
# latest) and claims at once: well under 1.5 s.  Had the free runner taken
# the second slow job, the trivial one would wait for a 3 s task.
my $delay = $node->q(
	"SELECT extract(epoch FROM started_at - created_at) FROM workflow.jobs WHERE id = $quick");
cmp_ok($delay, '<', 1.5, "(1) the trivial job started ${delay} s after its creation (< 1.5 s)");
is( $node->q(
		"SELECT count(*) FROM workflow.jobs WHERE id IN ($slow1, $slow2) AND execution = 'queued'"),
	'1',
	'(1) the second slow job was still queued when the trivial job ended');
is($node->wait_state($slow1), 'succeeded', '(1) the first slow job succeeded');
is($node->wait_state($slow2), 'succeeded', '(1) the second slow job succeeded');
is( $node->q(
		qq{SELECT count(*) FROM workflow.task_runs a JOIN workflow.task_runs b
		    ON a.job_id = $slow1 AND b.job_id = $slow2
		   WHERE tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)}),
	'0',
	'(1) the two slow jobs never ran at the same time');

###############################################################################
# (2) a rate limit of 100 per second
###############################################################################

$node->q(q{SELECT workflow.create_queue('paced', rate_limit => 100, rate_interval => '1 second')});
$node->create_workflow(q{{"name": "paced_job", "queue": "paced", "chain": [{"name": "a", "sql": "select 1"}]}});
$node->q(q{SELECT count(workflow.create_job('paced_job')) FROM generate_series(1, 1500)});
# the window ends 11 s after the first start: wait until a job started later
ok( $node->poll_for(
		qq{SELECT max(started_at) >= min(started_at) + interval '11.2 s'
		     FROM workflow.jobs WHERE queue = 'paced' AND started_at IS NOT NULL},
		't', 60),
	'(2) jobs of the paced queue started for more than 11 s');
my ($burst, $in_window) = split /\|/, $node->q(
	qq{WITH t AS (SELECT min(started_at) AS t0 FROM workflow.jobs WHERE queue = 'paced')
	   SELECT count(*) FILTER (WHERE j.started_at < t.t0 + interval '1 s'),
	          count(*) FILTER (WHERE j.started_at >= t.t0 + interval '1 s'
	                             AND j.started_at < t.t0 + interval '11 s')
	     FROM workflow.jobs j, t WHERE j.queue = 'paced'});
note("(2) started in the first second: $burst; in the 10 s window after it: $in_window");
# the full bucket (100) at once, then one second of refill (100)
ok($burst >= 150 && $burst <= 205, "(2) $burst jobs started in the first second (150 to 205)");
ok($in_window >= 950 && $in_window <= 1050,
	"(2) 100 per second: $in_window jobs started in the 10 s window (950 to 1050)");
$node->q(q{SELECT workflow.drop_workflow('paced_job', force => true)});
ok($node->poll_for("SELECT count(*) FROM workflow.jobs WHERE execution = 'running'", '0', 30),
	'(2) no job left running');
$node->stop;

###############################################################################
# (3) one runner, one batch: the jobs run in creation order
###############################################################################

my $one = WorkflowNode->create('queues_one', settings => { 'workflow.runners' => '1' });
ok($one->poll_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'workflow runner'", '1', 60),
	'(3) one runner is up');
$one->q(
	q{
CREATE TABLE public.stock (item text PRIMARY KEY, available int NOT NULL);
CREATE TABLE public.ran (n bigserial PRIMARY KEY, job bigint NOT NULL, got_lamp boolean NOT NULL);
INSERT INTO public.stock VALUES ('lamp', 1);
});
$one->create_workflow(
	q{{"name": "order", "chain": [{"name": "reserve", "sql": "with s as (update public.stock set available = available - 1 where item = 'lamp' and available > 0 returning 1) insert into public.ran (job, got_lamp) select ($1 -> 'job' ->> 'id')::bigint, exists (select from s) returning got_lamp"}]}}
);
# the application creates its orders in one transaction: one commit, one batch
$one->q(q{SELECT count(workflow.create_job('order', jsonb_build_object('order', i))) FROM generate_series(1, 20) i});
ok($one->poll_for("SELECT count(*) FROM workflow.jobs WHERE execution = 'succeeded'", '20', 60),
	'(3) the 20 orders succeeded');
is( $one->q(q{SELECT array_agg(job ORDER BY n) = array_agg(job ORDER BY job) FROM public.ran}),
	't', '(3) the orders ran in creation order');
is( $one->q(q{SELECT job = (SELECT min(id) FROM workflow.jobs) FROM public.ran WHERE got_lamp}),
	't', '(3) the first order created got the lamp');
is( $one->q(
		q{SELECT bool_and(s.started_at >= s.prev) FROM
		    (SELECT started_at, lag(started_at, 1, '-infinity') OVER (ORDER BY id) AS prev FROM workflow.jobs) s}),
	't',
	'(3) started_at does not decrease in id order');
note('(3) claims: '
	  . $one->q(q{SELECT count(DISTINCT claimed_at) FROM workflow.jobs})
	  . ' (one batch: 1)');

# with priorities, claim order is not creation order: the batch still runs
# in claim order (the claim returns its rows in no particular order; the
# runner orders them)
$one->q(q{TRUNCATE public.ran; UPDATE public.stock SET available = 1});
$one->q(
	q{SELECT count(workflow.create_job('order', jsonb_build_object('order', i), priority => i % 3))
	    FROM generate_series(1, 20) i});
ok($one->poll_for("SELECT count(*) FROM workflow.jobs WHERE execution = 'succeeded'", '40', 60),
	'(3) 20 orders with priorities succeeded');
is( $one->q(
		q{SELECT array_agg(r.job ORDER BY r.n) = array_agg(r.job ORDER BY j.priority DESC, j.run_at, j.id)
		    FROM public.ran r JOIN workflow.jobs j ON j.id = r.job}),
	't', '(3) they ran in claim order (priority first), not in creation order');
is( $one->q(
		q{SELECT j.priority FROM public.ran r JOIN workflow.jobs j ON j.id = r.job WHERE r.got_lamp}),
	'2', '(3) an order of the highest priority got the lamp');
$one->stop;

done_testing();
