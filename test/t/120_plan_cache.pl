# 120_plan_cache.pl: the runners keep task definitions and the plans of the
# tasks' SQL between jobs (src/task_cache.c); what they keep must never change
# what a task does.
#
# One runner, so that every job below runs in the same session and meets
# what the earlier jobs left in its cache.
#
# (1) A plan is kept per role that created the job: bob, who lacks USAGE on
#     a schema, does not get to use the plan alice's job made there (the
#     schema privilege is checked when a statement is analysed, not when a
#     kept plan runs).
# (2) A kept plan follows the objects it uses: the table of a task is
#     dropped and created again with another column type and other rows
#     between two jobs, and the second job sees the new table.
# (3) Code of several statements, the first creating what the next use,
#     runs statement after statement, at every run.
# (4) Output types the runner converts itself and through to_jsonb(), and
#     void (a task ending in SELECT pg_sleep(n)): no output.
# (5) After DROP and CREATE EXTENSION the workflow ids start again: a new
#     workflow with the id of one the runner ran before runs its own SQL,
#     not the old one.

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('plan_cache',
	settings => { 'workflow.runners' => 1, 'workflow.stale_after' => undef });

# wait for a job to end; returns "execution|result|sqlstate of the error"
sub finish
{
	my ($id) = @_;
	$node->wait_state($id);
	return $node->q("SELECT execution || '|' || coalesce(result::text, '') || '|' || "
		  . "coalesce(error ->> 'sqlstate', '') FROM workflow.jobs WHERE id = $id");
}

# create a job of $workflow as $role and wait for it; returns what finish() does
sub run_job
{
	my ($role, $workflow) = @_;
	my $id = $node->q_as($role, "SELECT workflow.create_job('$workflow')");
	return finish($id);
}

# (1) per-role plans and schema privileges
$node->create_role($_, 'workflow_user') for qw(alice bob);
$node->q(q{
CREATE SCHEMA private;
CREATE TABLE private.data (n int);
INSERT INTO private.data VALUES (1), (2), (3);
GRANT USAGE ON SCHEMA private TO alice;
GRANT SELECT ON private.data TO alice, bob;
});
$node->q_as('alice', q{SELECT workflow.create_workflow('{"name": "count_private", "chain": [{"name": "a", "sql": "SELECT count(*) FROM private.data", "attempts": 1}]}')});

is(run_job('alice', 'count_private'), 'succeeded|3|', 'alice: the task reads her schema');
is(run_job('alice', 'count_private'), 'succeeded|3|', 'alice: again, from the kept plan');
is(run_job('bob', 'count_private'), 'failed||42501',
	'bob: no USAGE on the schema, although a plan of this task exists');
is(run_job('alice', 'count_private'), 'succeeded|3|', 'alice: still runs after bob failed');
$node->q('GRANT USAGE ON SCHEMA private TO bob');
is(run_job('bob', 'count_private'), 'succeeded|3|', 'bob: runs once granted USAGE');

# (2) a kept plan follows DDL
$node->create_workflow(q{{"name": "read_value", "chain": [{"name": "a", "sql": "SELECT v FROM public.pc_value"}]}});
$node->q(q{CREATE TABLE public.pc_value (v int); INSERT INTO public.pc_value VALUES (41)});
is(run_job('postgres', 'read_value'), 'succeeded|41|', 'first table: an integer');
is(run_job('postgres', 'read_value'), 'succeeded|41|', 'first table again');
$node->q(q{DROP TABLE public.pc_value; CREATE TABLE public.pc_value (v text); INSERT INTO public.pc_value VALUES ('forty-two')});
is(run_job('postgres', 'read_value'), 'succeeded|"forty-two"|',
	'the table created again with a text column: the task sees it');
$node->q(q{ALTER TABLE public.pc_value RENAME COLUMN v TO w});
like(run_job('postgres', 'read_value'), qr/^failed\|\|42703$/,
	'the column renamed: the task fails as the SQL would');

# (3) several statements, the first creating what the next use
$node->create_workflow(q{{"name": "make_and_use", "chain": [{"name": "a",
	"sql": "CREATE TABLE IF NOT EXISTS public.pc_made (x int); INSERT INTO public.pc_made VALUES (1); SELECT count(*) FROM public.pc_made"}]}});
is(run_job('postgres', 'make_and_use'), 'succeeded|1|', 'several statements: the first run creates the table');
is(run_job('postgres', 'make_and_use'), 'succeeded|2|', 'several statements: the second run uses it');
$node->q('DROP TABLE public.pc_made');
is(run_job('postgres', 'make_and_use'), 'succeeded|1|', 'several statements: the table dropped meanwhile is made again');

# (4) output conversions
$node->create_workflow(q{{"name": "outputs", "chain": [
	{"name": "i2", "sql": "SELECT 7::int2"},
	{"name": "i8", "sql": "SELECT 9007199254740993::int8"},
	{"name": "b", "sql": "SELECT true"},
	{"name": "t", "sql": "SELECT 'quote \" and \\\\ backslash'::text"},
	{"name": "v", "sql": "SELECT 'varchar'::varchar"},
	{"name": "n", "sql": "SELECT 1.50::numeric"},
	{"name": "ts", "sql": "SELECT '2026-01-02 03:04:05+00'::timestamptz"},
	{"name": "arr", "sql": "SELECT ARRAY[1, 2]"},
	{"name": "nothing", "sql": "SELECT NULL::int"},
	{"name": "void", "sql": "SELECT pg_sleep(0)"},
	{"name": "rec", "sql": "SELECT row(1, 'x')"},
	{"name": "j", "sql": "SELECT '{\"a\": [1, 2]}'::json"}]}});
my $id = $node->q("SET TIME ZONE 'UTC'; SELECT workflow.create_job('outputs')");
is(finish($id), 'succeeded|{"a": [1, 2]}|', 'outputs: the job succeeded');
my %out = split /[|\n]/, $node->q("SELECT task, coalesce(output::text, 'NULL') FROM workflow.task_runs WHERE job_id = $id ORDER BY id");
is($out{i2}, '7', 'int2 output');
is($out{i8}, '9007199254740993', 'int8 output keeps every digit');
is($out{b}, 'true', 'boolean output');
is($out{t}, '"quote \" and \\\\ backslash"', 'text output is escaped');
is($out{v}, '"varchar"', 'varchar output');
is($out{n}, '1.50', 'numeric output through to_jsonb');
like($out{ts}, qr/^"2026-01-02T03:04:05(\+00:00)?"$/, 'timestamptz output through to_jsonb');
is($out{arr}, '[1, 2]', 'array output through to_jsonb');
is($out{nothing}, 'NULL', 'a NULL output');
is($out{void}, 'NULL', 'a void output (SELECT pg_sleep(0)) is no output');
is($out{rec}, '{"f1": 1, "f2": "x"}', 'an anonymous record output through to_jsonb');

# (5) the cache starts again with the extension
$node->q('DROP EXTENSION workflow CASCADE');
$node->q('CREATE EXTENSION workflow');
$node->create_workflow(q{{"name": "first", "chain": [{"name": "a", "sql": "SELECT 'old'"}]}});
my $wid = $node->q("SELECT id FROM workflow.workflows WHERE name = 'first'");
is(run_job('postgres', 'first'), 'succeeded|"old"|', 'before: the first workflow runs');
$node->q('DROP EXTENSION workflow CASCADE');
$node->q('CREATE EXTENSION workflow');
$node->create_workflow(q{{"name": "second", "chain": [{"name": "a", "sql": "SELECT 'new'"}]}});
my $wid2 = $node->q("SELECT id FROM workflow.workflows WHERE name = 'second'");
is($wid2, $wid, 'the new extension gave the new workflow the same id');
is(run_job('postgres', 'second'), 'succeeded|"new"|',
	'after CREATE EXTENSION the runner runs the new SQL, not what it kept');

done_testing();
