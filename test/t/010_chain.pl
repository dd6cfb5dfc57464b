# 010_chain.pl: the in-server runners execute SQL chains (README "How
# jobs run").
#
# (1) Exactly once: 300 jobs of a 3-task SQL chain, run by 4 runners at the
#     same time.  Every task inserts a row keyed (job_id, task) into a table
#     with a primary key: 900 rows, no unique violation ever reported in
#     task_runs, exactly 3 succeeded task runs per job and no other run.
# (2) Results are passed on: task 2 computes from $1->'results'->'t1', task
#     3 from t1 and t2; the job's result is the last task's output, checked
#     for every job.
# (3) The job context ($1) of README "Workflow definitions": job.id, workflow, version,
#     params, target, attempt; task.name and task.attempt; results of the
#     tasks done so far (empty for the first one).
# (4) Output conversion: a jsonb, json, text, integer, boolean, a NULL and a
#     statement returning no row.
# (5) A slow task (4s) does not hold back 10 quick jobs created in the same
#     transaction: they are done, and visible as done, while it still runs.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('chain', settings => { 'workflow.runners' => 4 });

###############################################################################
# (1) and (2): 300 jobs of a 3-task chain
###############################################################################

$node->safe_psql(
	'postgres', q{
CREATE TABLE public.effects (
    job_id  bigint NOT NULL,
    task    text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, task));
});

# Each task inserts its row first, then returns its output (the output of
# the last statement).  The primary key makes any second execution of a
# task fail (or be rolled back), so double execution shows up either as a
# unique violation in task_runs or as a failed/extra run.
my $chain = q{{
  "name": "chain3",
  "chain": [
    {"name": "t1",
     "sql": "insert into effects (job_id, task) values (($1->'job'->>'id')::bigint, 't1'); select (($1->'job'->'params'->>'n')::int * 10)"},
    {"name": "t2",
     "sql": "insert into effects (job_id, task) values (($1->'job'->>'id')::bigint, 't2'); select jsonb_build_object('from_t1', $1->'results'->'t1', 'plus1', ($1->'results'->>'t1')::int + 1)"},
    {"name": "t3",
     "sql": "insert into effects (job_id, task) values (($1->'job'->>'id')::bigint, 't3'); select jsonb_build_object('t1', $1->'results'->'t1', 't2', $1->'results'->'t2', 'sum', ($1->'results'->>'t1')::int + ($1->'results'->'t2'->>'plus1')::int)"}
  ]}};
$chain =~ s/\n\s*/ /g;
is($node->safe_psql('postgres', "SELECT workflow.create_workflow(\$wf\$$chain\$wf\$)"),
	'1', 'chain3: workflow created');

# all 300 in one transaction: they become runnable at the same moment, so
# the 4 runners compete for them
$node->safe_psql('postgres',
	q{SELECT count(workflow.create_job('chain3', jsonb_build_object('n', g))) FROM generate_series(1, 300) g}
);
is($node->safe_psql('postgres', "SELECT count(*) FROM workflow.jobs WHERE workflow = 'chain3'"),
	'300', 'chain3: 300 jobs created');

$node->wait_workflow_finished('chain3', 'chain3');

# several runners took part (the point of the concurrency)
my $runners = $node->safe_psql('postgres',
	q{SELECT count(DISTINCT r.runner_id) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id WHERE j.workflow = 'chain3'});
cmp_ok($runners, '>=', 2, "chain3: jobs were run by several runners ($runners)");

is( $node->safe_psql(
		'postgres',
		"SELECT execution, count(*) FROM workflow.jobs WHERE workflow = 'chain3' GROUP BY 1 ORDER BY 1"),
	'succeeded|300',
	'chain3: all 300 jobs succeeded');

is($node->safe_psql('postgres', 'SELECT count(*) FROM effects'),
	'900', 'chain3: 900 side-effect rows (each task of each job once)');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs j
 WHERE j.workflow = 'chain3'
   AND (SELECT array_agg(e.task ORDER BY e.task) FROM effects e WHERE e.job_id = j.id)
       IS DISTINCT FROM ARRAY['t1', 't2', 't3']}),
	'0',
	'chain3: every job has exactly the rows t1, t2, t3');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM effects e
 WHERE NOT EXISTS (SELECT 1 FROM workflow.jobs j WHERE j.id = e.job_id AND j.workflow = 'chain3')}),
	'0',
	'chain3: no side-effect row for a job that does not exist');

# the tasks of a job ran in chain order
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM effects a JOIN effects b ON a.job_id = b.job_id
 WHERE (a.task, b.task) IN (('t1', 't2'), ('t2', 't3')) AND a.at > b.at}),
	'0',
	'chain3: t1 before t2 before t3 in every job');

is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
 WHERE j.workflow = 'chain3' AND r.error->>'sqlstate' = '23505'}),
	'0',
	'chain3: no unique violation recorded in task_runs');
is( $node->safe_psql(
		'postgres', q{
SELECT r.status, count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
 WHERE j.workflow = 'chain3' GROUP BY 1 ORDER BY 1}),
	'succeeded|900',
	'chain3: task_runs has only succeeded runs, 900 of them');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs j
 WHERE j.workflow = 'chain3'
   AND (SELECT array_agg(r.task || ':' || r.status || ':' || r.attempt || ':' || r.job_attempt || ':' || r.phase ORDER BY r.id)
          FROM workflow.task_runs r WHERE r.job_id = j.id)
       IS DISTINCT FROM ARRAY['t1:succeeded:1:1:chain', 't2:succeeded:1:1:chain', 't3:succeeded:1:1:chain']}),
	'0',
	'chain3: each job has exactly one succeeded run of t1, t2, t3, in order, attempt 1');

# outputs passed on, checked for every job
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs j
 WHERE j.workflow = 'chain3'
   AND j.result IS DISTINCT FROM jsonb_build_object(
         't1', (j.params->>'n')::int * 10,
         't2', jsonb_build_object('from_t1', (j.params->>'n')::int * 10,
                                  'plus1', (j.params->>'n')::int * 10 + 1),
         'sum', (j.params->>'n')::int * 20 + 1)}),
	'0',
	'chain3: job.result of every job is t3 computed from the results of t1 and t2');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id
 WHERE j.workflow = 'chain3' AND r.task = 't1' AND r.output IS DISTINCT FROM to_jsonb((j.params->>'n')::int * 10)}),
	'0',
	'chain3: the output of t1 is stored in task_runs for every job');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM workflow.jobs
 WHERE workflow = 'chain3'
   AND (error IS NOT NULL OR started_at IS NULL OR finished_at IS NULL
        OR finished_at < started_at OR attempt <> 1)}),
	'0',
	'chain3: no error and consistent started_at/finished_at on every job');
is( $node->safe_psql(
		'postgres', q{SELECT (workflow.get_job(max(id))->>'execution') FROM workflow.jobs WHERE workflow = 'chain3'}),
	'succeeded',
	'chain3: get_job shows the job succeeded');

###############################################################################
# (3) the job context
###############################################################################

# version 1 and version 2 of a workflow whose first task returns its whole
# context and whose second task returns its whole context too
my $ctx = q{{"name": "ctx", "chain": [
  {"name": "first", "sql": "select $1"},
  {"name": "second", "sql": "select $1"}]}};
$ctx =~ s/\n\s*/ /g;
$node->safe_psql('postgres', "SELECT workflow.create_workflow('$ctx')");
is($node->safe_psql('postgres', "SELECT workflow.create_workflow('$ctx')"),
	'2', 'ctx: second version stored');

my $ctx_job = $node->safe_psql('postgres',
	q{SELECT workflow.create_job('ctx', '{"a": 1, "b": ["x"]}', target => 'tgt-1', version => 1)});
my $ctx_job2 = $node->safe_psql('postgres', q{SELECT workflow.create_job('ctx')});
$node->wait_workflow_finished('ctx', 'ctx');

is($node->safe_psql('postgres', "SELECT execution FROM workflow.jobs WHERE id = $ctx_job"),
	'succeeded', 'ctx: the job succeeded');

# the first task's context, as stored as its output
my $first = "(SELECT output FROM workflow.task_runs WHERE job_id = $ctx_job AND task = 'first')";
my $second = "(SELECT output FROM workflow.task_runs WHERE job_id = $ctx_job AND task = 'second')";
is($node->safe_psql('postgres', "SELECT $first->'job'->>'id'"),
	$ctx_job, 'ctx: job.id is the job id');
is($node->safe_psql('postgres', "SELECT jsonb_typeof($first->'job'->'id')"),
	'number', 'ctx: job.id is a JSON number');
is($node->safe_psql('postgres', "SELECT $first->'job'->>'workflow'"),
	'ctx', 'ctx: job.workflow is the workflow name');
is($node->safe_psql('postgres', "SELECT $first->'job'->>'version'"),
	'1', 'ctx: job.version is the version the job was created from (1)');
is($node->safe_psql('postgres', "SELECT $first->'job'->'params' = '{\"a\": 1, \"b\": [\"x\"]}'"),
	't', 'ctx: job.params are the params');
is($node->safe_psql('postgres', "SELECT $first->'job'->>'target'"),
	'tgt-1', 'ctx: job.target is the target');
is($node->safe_psql('postgres', "SELECT $first->'job'->'attempt'"),
	'1', 'ctx: job.attempt counts from 1');
is($node->safe_psql('postgres', "SELECT $first->'task'->>'name'"),
	'first', 'ctx: task.name of the first task');
is($node->safe_psql('postgres', "SELECT $first->'task'->'attempt'"),
	'1', 'ctx: task.attempt counts from 1');
is($node->safe_psql('postgres', "SELECT $first->'results'"),
	'{}', 'ctx: results is empty for the first task');

is($node->safe_psql('postgres', "SELECT $second->'task'->>'name'"),
	'second', 'ctx: task.name of the second task');
is($node->safe_psql('postgres', "SELECT $second->'task'->'attempt'"),
	'1', 'ctx: task.attempt of the second task is 1');
is( $node->safe_psql('postgres',
		"SELECT $second->'results'->'first' = $first AND (SELECT count(*) FROM jsonb_object_keys($second->'results')) = 1"),
	't',
	'ctx: results of the second task has exactly the output of the first');
is($node->safe_psql('postgres', "SELECT (SELECT result FROM workflow.jobs WHERE id = $ctx_job) = $second"),
	't', 'ctx: the job result is the output of the last task');

is( $node->safe_psql('postgres',
		"SELECT output->'job'->>'version' || ',' || (output->'job'->'params')::text || ',' || coalesce(output->'job'->>'target', 'NULL') FROM workflow.task_runs WHERE job_id = $ctx_job2 AND task = 'first'"),
	'2,{},NULL',
	'ctx: a job of the latest version sees version 2, empty params, target null');

###############################################################################
# (4) output conversion
###############################################################################

my $out = q{{"name": "outputs", "chain": [
  {"name": "jb", "sql": "select '{\"k\": [1, 2]}'::jsonb"},
  {"name": "js", "sql": "select '{\"k\": true}'::json"},
  {"name": "tx", "sql": "select 'hello'::text"},
  {"name": "i", "sql": "select 42"},
  {"name": "b", "sql": "select true, 'ignored second column'"},
  {"name": "n", "sql": "select null::int"},
  {"name": "none", "sql": "select 1 where false"},
  {"name": "rows", "sql": "select g from generate_series(7, 9) g"}
  ]}};
$out =~ s/\n\s*/ /g;
$out =~ s/'/''/g;
$node->safe_psql('postgres', "SELECT workflow.create_workflow('$out')");
my $out_job = $node->safe_psql('postgres', q{SELECT workflow.create_job('outputs')});
$node->wait_workflow_finished('outputs', 'outputs');
is($node->safe_psql('postgres', "SELECT execution FROM workflow.jobs WHERE id = $out_job"),
	'succeeded', 'outputs: the job succeeded');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(task || '=' || coalesce(output::text, 'SQLNULL'), ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $out_job"
	),
	'jb={"k": [1, 2]} js={"k": true} tx="hello" i=42 b=true n=SQLNULL none=SQLNULL rows=7',
	'outputs: the first column of the first row, converted to jsonb');

###############################################################################
# (5) a slow task does not hold back the jobs created with it
###############################################################################

# Each SQL task runs in its own transaction with the record
# of its outcome.  A slow job and 10 quick jobs created in one transaction
# (so that they become runnable together, the slow one first in claim
# order): with 4 runners, the quick jobs must be done, and visible as done,
# while the slow task still sleeps; their completion must not wait for the
# commit of another job's task.
$node->safe_psql('postgres',
	q{SELECT workflow.create_workflow('{"name": "slow", "chain": [{"name": "s", "sql": "select pg_sleep(4)"}]}')});
$node->safe_psql('postgres',
	q{SELECT workflow.create_workflow('{"name": "quick", "chain": [{"name": "q", "sql": "select 1"}]}')});
my $slow = $node->safe_psql('postgres',
	q{BEGIN;
	  SELECT workflow.create_job('slow');
	  SELECT count(workflow.create_job('quick')) FROM generate_series(1, 10);
	  COMMIT;});
($slow) = split /\n/, $slow;
{
	local $PostgreSQL::Test::Utils::timeout_default = 2;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) FROM workflow.jobs WHERE workflow = 'quick' AND execution = 'succeeded'", '10'),
		'slow/quick: the 10 quick jobs are done within 2s');
}
is($node->safe_psql('postgres', "SELECT execution FROM workflow.jobs WHERE id = $slow"),
	'running', 'slow/quick: while the slow job is still running');
$node->wait_workflow_finished('slow', 'slow/quick');
$node->wait_workflow_finished('quick', 'slow/quick');
note('slow/quick: runner of the slow job: '
	  . $node->safe_psql('postgres', "SELECT runner_id FROM workflow.task_runs WHERE job_id = $slow")
	  . '; runners of the quick jobs: '
	  . $node->safe_psql('postgres',
		"SELECT string_agg(r.runner_id || ' x' || n, ', ') FROM (SELECT r.runner_id, count(*) n FROM workflow.task_runs r JOIN workflow.jobs j ON j.id = r.job_id WHERE j.workflow = 'quick' GROUP BY 1) r"));

# nothing went wrong in the server
my @bad = $node->log_lines(qr/\b(PANIC|FATAL):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'server log: no PANIC, FATAL or crashed backend');

$node->stop;

done_testing();
