# WorkflowNode.pm: a PostgreSQL::Test::Cluster for the workflow extension's
# TAP tests (test/t/*.pl), in the manner of timescaledb's TimescaleNode.pm.
#
# It sets up a cluster the way the tests need it (the library preloaded,
# workflow.database = 'postgres', fast runner and sweeper intervals, per-test
# overrides), creates the extension, and holds the helpers the tests share:
# queries as the superuser or as another role, storing workflows, waiting
# for jobs, listing task runs, finding the runner in a task, the sweeper's
# passes and the server log.
#
#   use lib ...;              # prove -I test/perl (the Makefile's PROVE_FLAGS)
#   use WorkflowNode;
#   my $node = WorkflowNode->create('name', settings => { 'workflow.runners' => 4 });
#   $node->create_workflow(q{{"name": "w", "chain": [...]}});
#   my $id = $node->q(q{SELECT workflow.create_job('w')});
#   is($node->wait_state($id), 'succeeded', '...');
#
# Every query helper runs in database postgres and dies on an error (as
# safe_psql does).  Works with PostgreSQL::Test::Cluster of PostgreSQL 15
# and 18: new() is a class method that blesses into the class it is called
# on, so WorkflowNode->new (and create) return a WorkflowNode.

package WorkflowNode;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use parent -norequire, 'PostgreSQL::Test::Cluster';

# The configuration every test starts from, in this order in
# postgresql.conf; create()'s settings override (undef: leave the line out,
# so that the server default applies).
my @default_settings = (
	[ shared_preload_libraries => 'workflow' ],
	[ max_worker_processes => '16' ],
	[ 'workflow.database' => 'postgres' ],
	[ 'workflow.runners' => '2' ],
	[ 'workflow.run_interval' => '50ms' ],
	[ 'workflow.activity_interval' => '100ms' ],
	[ 'workflow.stale_after' => '1s' ],);

# The states a job does not leave.
my @terminal = qw(succeeded failed canceled);

# Create (new + init), configure and, unless told otherwise, start a node
# and create the extension.  Options:
#   settings  => { name => value, ... }  postgresql.conf settings over the
#                defaults above (value undef: no such line); values are
#                written quoted
#   preload   => 0     a plain cluster: none of the defaults but
#                      max_worker_processes (the library is not preloaded)
#   pg_cron   => 1     also preload pg_cron (cron.database_name = 'postgres',
#                      cron.host = this node's socket directory) and create
#                      the pg_cron extension before workflow;
#                      'if_installed': only when pg_cron is installed (see
#                      has_pg_cron)
#   start     => 0     do not start (nor create any extension)
#   extension => 0     do not create the extension
#   search_path => '...'  q() and q_as() set this search_path first
#   init      => { ... }  options for PostgreSQL::Test::Cluster::init
sub create
{
	my ($class, $name, %opts) = @_;
	my $node = $class->new($name);
	$node->init(%{ $opts{init} // {} });

	my $preload = $opts{preload} // 1;
	my $cron = $opts{pg_cron} // 0;
	if ($cron && $cron eq 'if_installed')
	{
		my $sharedir = $node->config_data('--sharedir');
		$cron = -f "$sharedir/extension/pg_cron.control" ? 1 : 0;
	}
	$node->{_workflow_pg_cron} = $cron;
	$node->{_workflow_search_path} = $opts{search_path};

	my @settings =
	  $preload
	  ? map { [@$_] } @default_settings
	  : ([ max_worker_processes => '16' ]);
	if ($cron)
	{
		$settings[0][1] .= ',pg_cron';
		push @settings, [ 'cron.database_name' => 'postgres' ],
		  [ 'cron.host' => $node->host ];
	}
	my %override = %{ $opts{settings} // {} };
	my @conf;
	foreach my $s (@settings)
	{
		my ($k, $v) = @$s;
		$v = delete $override{$k} if exists $override{$k};
		push @conf, [ $k, $v ];
	}
	push @conf, map { [ $_, $override{$_} ] } sort keys %override;
	$node->append_conf('postgresql.conf',
		"\n# WorkflowNode\n"
		  . join('',
			map { "$_->[0] = " . _conf_quote($_->[1]) . "\n" }
			grep { defined $_->[1] } @conf));

	return $node if defined $opts{start} && !$opts{start};
	$node->start;

	$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron') if $cron;
	$node->safe_psql('postgres', 'CREATE EXTENSION workflow')
	  if $opts{extension} // 1;
	return $node;
}

# A value as a single-quoted postgresql.conf literal.
sub _conf_quote
{
	my ($v) = @_;
	$v =~ s/'/''/g;
	return "'$v'";
}

# True if create() configured pg_cron for this node.
sub has_pg_cron
{
	my ($self) = @_;
	return $self->{_workflow_pg_cron};
}

# The SQL to run before a query: the search_path asked for at create().
sub _prefix
{
	my ($self) = @_;
	my $sp = $self->{_workflow_search_path};
	return defined $sp ? "SET search_path = $sp;\n" : '';
}

# Run SQL as the superuser in database postgres; returns its output
# (safe_psql: dies on an error).
sub q
{
	my ($self, $sql) = @_;
	return $self->safe_psql('postgres', $self->_prefix . $sql);
}

# Run SQL connected as $role in database postgres; returns its output.
sub q_as
{
	my ($self, $role, $sql) = @_;
	return $self->safe_psql('postgres', $self->_prefix . $sql,
		extra_params => [ '-U', $role ]);
}

# Run SQL with \set VERBOSITY verbose (errors carry their SQLSTATE), not
# dying on an error; returns ($rc, $stdout, $stderr).  Option as => $role:
# connected as that role.
sub psql_verbose
{
	my ($self, $sql, %opts) = @_;
	my ($stdout, $stderr) = ('', '');
	my $rc = $self->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout,
		stderr => \$stderr,
		defined $opts{as} ? (extra_params => [ '-U', $opts{as} ]) : ());
	return ($rc, $stdout, $stderr);
}

# Run SQL (option as => $role); the SQLSTATE of its error, or 'ok: <output>'.
sub sqlstate_of
{
	my ($self, $sql, %opts) = @_;
	my ($rc, $stdout, $stderr) = $self->psql_verbose($sql, %opts);
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "ok: $stdout";
}

# Create a LOGIN role that is no superuser and cannot create roles or
# databases, member of the given roles (e.g. workflow_user).
sub create_role
{
	my ($self, $role, @member_of) = @_;
	$self->safe_psql('postgres',
		"CREATE ROLE $role LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;\n"
		  . join('', map { "GRANT $_ TO $role;\n" } @member_of));
	return;
}

# Store a workflow given as JSON text (newlines allowed, they become
# spaces); returns its version.  Options: as => $role (connected as that
# role), set_role => $role (as the superuser after SET ROLE).
sub create_workflow
{
	my ($self, $def, %opts) = @_;
	$def =~ s/\n\s*/ /g;
	my $sql = "SELECT workflow.create_workflow(\$wf\$$def\$wf\$)";
	$sql = "SET ROLE $opts{set_role}; $sql" if defined $opts{set_role};
	return defined $opts{as} ? $self->q_as($opts{as}, $sql) : $self->q($sql);
}

# Create a job of workflow $wf with params $params (JSON text, default
# '{}'); returns its id.
sub create_job
{
	my ($self, $wf, $params) = @_;
	$params //= '{}';
	return $self->q("SELECT workflow.create_job('$wf', '$params')");
}

# Poll until job $id is in one of @states or finished (succeeded, failed,
# canceled); returns its state.
sub wait_state
{
	my ($self, $id, @states) = @_;
	my $list = join(',', map { "'$_'" } (@states, @terminal));
	$self->poll_query_until('postgres',
		"SELECT execution IN ($list) FROM workflow.jobs WHERE id = $id")
	  or diag("job $id did not reach one of $list: "
		  . $self->q("SELECT execution || ' ' || coalesce(error::text, '') FROM workflow.jobs WHERE id = $id"));
	return $self->q("SELECT execution FROM workflow.jobs WHERE id = $id");
}

# Assert (ok) that every job of workflow $workflow finishes, $what naming
# the test.
sub wait_workflow_finished
{
	my ($self, $workflow, $what) = @_;
	ok( $self->poll_query_until(
			'postgres', qq{
SELECT count(*) = 0 FROM workflow.jobs
 WHERE workflow = '$workflow'
   AND execution NOT IN ('succeeded', 'failed', 'canceled')}),
		"$what: every job finished");
}

# Poll $query until it returns $expected (default 't'), for at most
# $seconds instead of the (long) default timeout; true if it did.
sub poll_for
{
	my ($self, $query, $expected, $seconds) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds;
	return $self->poll_query_until('postgres', $query, $expected);
}

# The task runs of job $id in order, separated by spaces, each its @fields
# joined by ':' (default: task, status).  A field is a column of
# workflow.task_runs, or:
#   runner         runner_id, '-' if none
#   fallback       appends ':fallback' to a run of the fallback
#   lease_expired  appends ':lease_expired' to a run whose lease expired
sub runs
{
	my ($self, $id, @fields) = @_;
	@fields = qw(task status) unless @fields;
	my %flag = (
		fallback => q{CASE WHEN fallback THEN ':fallback' ELSE '' END},
		lease_expired =>
		  q{CASE WHEN (error ->> 'lease_expired')::boolean THEN ':lease_expired' ELSE '' END},);
	my $expr = '';
	foreach my $f (@fields)
	{
		if ($flag{$f})
		{
			$expr .= " || $flag{$f}";
			next;
		}
		my $col = $f eq 'runner' ? q{coalesce(runner_id, '-')} : $f;
		$expr .= $expr eq '' ? $col : " || ':' || $col";
	}
	return $self->q(
		"SELECT string_agg($expr, ' ' ORDER BY id) FROM workflow.task_runs WHERE job_id = $id");
}

# Wait until the runner executing job $id is inside pg_sleep; returns its
# pid.
sub sleeping_runner
{
	my ($self, $id) = @_;
	my $q =
	  "SELECT pid FROM pg_stat_activity WHERE backend_type = 'workflow runner' AND query LIKE 'workflow job $id:%' AND wait_event = 'PgSleep'";
	$self->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($q) s")
	  or diag("no runner sleeping in job $id");
	return $self->q($q);
}

# kill -9 the runner that sleeps in the task of job $id and wait until the
# server is back from the crash; asserts both, $what naming the tests.
# With flush => 1, a synchronous commit first flushes the WAL, so that the
# runner's claim (committed without waiting for its flush) survives.
sub crash_in_task
{
	my ($self, $id, $what, %opts) = @_;
	my $pid = $self->sleeping_runner($id);
	ok($pid, "$what: the runner executes job $id");
	$self->q('CREATE TABLE IF NOT EXISTS public.wal_flush (x int); INSERT INTO public.wal_flush VALUES (1)')
	  if $opts{flush};
	my $offset = -s $self->logfile;
	kill 'KILL', $pid;
	$self->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	ok($self->poll_for('SELECT 1', '1', 60), "$what: the server is back after the crash");
	return;
}

# A crash in the middle of a batch of ten.  Creates ten jobs of workflow
# $workflow in one transaction (its commit wakes a runner, which claims them
# in one batch), the first with priority 1 and params {"slow": true}, the
# others {"slow": false}; once a runner sleeps in the first one's task,
# crashes the server in it (crash_in_task, with %opts).  Asserts that the
# nine others were claimed by that runner, and that afterwards they succeed
# at their first task attempt.  Returns the first id and the nine others
# joined by ','.
sub crash_batch_of_ten
{
	my ($self, $workflow, %opts) = @_;
	my @ids = split /,/,
	  $self->q(
		"SELECT string_agg(id::text, ',' ORDER BY n) FROM (
		   SELECT n, workflow.create_job('$workflow',
		            jsonb_build_object('slow', n = 0), priority => CASE WHEN n = 0 THEN 1 ELSE 0 END) AS id
		     FROM generate_series(0, 9) n) s");
	my ($slow, $rest) = ($ids[0], join(',', @ids[ 1 .. 9 ]));
	$self->sleeping_runner($slow);
	is($self->q("SELECT count(*) FROM workflow.jobs WHERE id IN ($rest) AND execution = 'running'"),
		'9', "$workflow: the nine others are claimed by the same runner");
	$self->crash_in_task($slow, $workflow, %opts);
	ok($self->poll_for("SELECT count(*) FROM workflow.jobs WHERE id IN ($rest) AND execution = 'succeeded'",
			'9', 60),
		"$workflow: the nine jobs that had not started succeed");
	is($self->q("SELECT count(*) FROM workflow.task_runs WHERE job_id IN ($rest) AND status = 'succeeded' AND attempt = 1"),
		'9', "$workflow: each succeeded at its first task attempt");
	return ($slow, $rest);
}

# Wait until backend $pid is no longer in pg_sleep; true if it is alive.
sub left_sleep
{
	my ($self, $pid) = @_;
	return $self->poll_query_until('postgres',
		"SELECT wait_event IS DISTINCT FROM 'PgSleep' FROM pg_stat_activity WHERE pid = $pid");
}

# The pids of the runners, ordered and joined by ','.
sub runner_pids
{
	my ($self) = @_;
	return $self->q(
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'workflow runner'"
	);
}

# Wait until the sweeper completed $n more passes: its heartbeat row is
# written in the same transaction as each pass.  False if it did not.
sub sweeper_passes
{
	my ($self, $n) = @_;
	for my $i (1 .. $n)
	{
		my $at = $self->q("SELECT active_at FROM workflow.runners WHERE id = 'sweeper'");
		return 0 if $at eq '';
		$self->poll_query_until('postgres',
			"SELECT active_at > '$at' FROM workflow.runners WHERE id = 'sweeper'")
		  or return 0;
	}
	return 1;
}

# The lines of the server log that match $re.  Options: offset => the log
# position to start from, except => a regex of lines to leave out.
sub log_lines
{
	my ($self, $re, %opts) = @_;
	my $log = slurp_file($self->logfile, $opts{offset} // 0);
	return grep { /$re/ && !(defined $opts{except} && /$opts{except}/) }
	  split /\n/, $log;
}

1;
