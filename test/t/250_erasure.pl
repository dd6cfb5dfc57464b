# 240_erasure.pl: delete_job and redact_job on jobs the runners ran, and
# their audit in the server log (README "Erasure and dead letters").
#
#   er_alice  LOGIN, member of workflow_user: creates the jobs
#   er_carol  LOGIN, member of workflow_admin: erases them
#
# (1) A job of er_alice that failed (its error names the params; er_alice
#     added info) and one that succeeded (its output holds the params), run
#     by the in-server runners.  er_carol's
#     redact_job of the failed one returns 1 and leaves neither params nor
#     error text in workflow.jobs, task_runs or job_info, its state and
#     timings unchanged; the server log has one LOG line naming the job,
#     its workflow and er_carol.  Her delete_job of the succeeded one
#     returns 1, leaves no row of it, and logs a line the same way.
# (2) Refused calls leave no audit line: er_alice's delete_job (42501),
#     er_carol's delete_job of a queued job (55000).

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

my $node = WorkflowNode->create('erasure');
$node->create_role('er_alice', 'workflow_user');
$node->create_role('er_carol', 'workflow_admin');

$node->create_workflow(
	q{{"name": "er_fail", "chain": [{"name": "t", "sql": "select ($1 -> 'job' -> 'params' ->> 'email')::integer"}]}},
	as => 'er_alice');
$node->create_workflow(
	q{{"name": "er_ok", "chain": [{"name": "t", "sql": "select $1 -> 'job' -> 'params'"}]}},
	as => 'er_alice');

###############################################################################
# (1) redact_job and delete_job, each with its audit line
###############################################################################

my $failed = $node->q_as('er_alice', q{SELECT workflow.create_job('er_fail', '{"email": "ann@example.com"}')});
my $succeeded = $node->q_as('er_alice', q{SELECT workflow.create_job('er_ok', '{"email": "bob@example.com"}')});
is($node->wait_state($failed), 'failed', 'a job of er_alice failed');
is($node->wait_state($succeeded), 'succeeded', 'another one succeeded');
$node->q_as('er_alice', qq{SELECT workflow.add_info($failed, '{"who": "ann"}')});
is( $node->q(
		qq{SELECT (SELECT count(*) FROM workflow.task_runs WHERE job_id = $succeeded AND output::text LIKE '%bob%')
                + (SELECT count(*) FROM workflow.task_runs WHERE job_id = $failed AND error::text LIKE '%ann%')
                + (SELECT count(*) FROM workflow.jobs WHERE id = $failed AND error::text LIKE '%ann%')
                + (SELECT count(*) FROM workflow.job_info WHERE job_id = $failed AND info::text LIKE '%ann%')}),
	'4', 'their task output, error and info hold the params');

my $kept = qq{SELECT execution || ' ' || started_at || ' ' || finished_at || ' '
                     || (SELECT string_agg(status || ' ' || started_at || ' ' || finished_at, ',')
                           FROM workflow.task_runs r WHERE r.job_id = j.id)
                FROM workflow.jobs j WHERE j.id = $failed};
my $before = $node->q($kept);

my $offset = -s $node->logfile;
is($node->q_as('er_carol', "SELECT workflow.redact_job($failed)"), '1', 'er_carol redacts the failed job');
is( $node->q(
		qq{SELECT (SELECT count(*) FROM workflow.jobs WHERE id = $failed
                     AND (params::text || coalesce(error::text, '')) LIKE '%ann%')
                + (SELECT count(*) FROM workflow.task_runs WHERE job_id = $failed
                     AND (coalesce(output::text, '') || coalesce(error::text, '')) LIKE '%ann%')
                + (SELECT count(*) FROM workflow.job_info WHERE job_id = $failed AND info::text LIKE '%ann%')}),
	'0', 'redact_job: no params, output, error text or info left');
is($node->q($kept), $before, 'redact_job: state and timings unchanged');
my @audit = $node->log_lines(qr/LOG:  job $failed of workflow/, offset => $offset);
is(scalar(@audit), 1, 'redact_job: one audit line');
like($audit[0] // '', qr/LOG:  job $failed of workflow "er_fail" redacted by role "er_carol"/,
	'redact_job: the audit line names the job, its workflow and the role');

$offset = -s $node->logfile;
is($node->q_as('er_carol', "SELECT workflow.delete_job($succeeded)"), '1', 'er_carol deletes the succeeded job');
is( $node->q(
		qq{SELECT (SELECT count(*) FROM workflow.jobs WHERE id = $succeeded)
                + (SELECT count(*) FROM workflow.task_runs WHERE job_id = $succeeded)
                + (SELECT count(*) FROM workflow.job_info WHERE job_id = $succeeded)}),
	'0', 'delete_job: no row of the job is left');
@audit = $node->log_lines(qr/LOG:  job $succeeded of workflow/, offset => $offset);
is(scalar(@audit), 1, 'delete_job: one audit line');
like($audit[0] // '', qr/LOG:  job $succeeded of workflow "er_ok" deleted by role "er_carol"/,
	'delete_job: the audit line names the job, its workflow and the role');

###############################################################################
# (2) refused calls leave no audit line
###############################################################################

my $live = $node->q_as('er_alice', q{SELECT workflow.create_job('er_ok', run_at => now() + interval '1 day')});
$offset = -s $node->logfile;
is($node->sqlstate_of("SELECT workflow.delete_job($failed)", as => 'er_alice'),
	'42501', 'er_alice may not delete her own job: 42501');
is($node->sqlstate_of("SELECT workflow.delete_job($live)", as => 'er_carol'),
	'55000', 'a queued job cannot be deleted: 55000');
is($node->q("SELECT count(*) FROM workflow.jobs WHERE id IN ($failed, $live)"), '2', 'both jobs are still there');
is_deeply([ $node->log_lines(qr/LOG:  job \d+ of workflow .* (deleted|redacted) by role/, offset => $offset) ],
	[], 'refused calls: no audit line');

$node->stop;

done_testing();
