# 090_no_escalation.pl: an ordinary role never gains more than its own
# rights through the extension (README "Security").
#
# 040_identity.pl proves that tasks run as their creator and that SET ROLE,
# SET SESSION AUTHORIZATION, ALTER ROLE ... SUPERUSER, pg_read_file, COPY TO
# PROGRAM, ALTER SYSTEM, ... fail inside a task.  This file adds what it
# does not cover, and the extension's own name resolution:
#
# (1) Planted objects.  Before CREATE EXTENSION workflow, an ordinary role
#     (mallory, who was given CREATE on schema public) plants functions,
#     operators, tables and views in public whose names and argument types
#     are those the extension and its workers use, or better matches for
#     them (jsonb_build_object(text, text), format(text, text), now(),
#     nextval(text), cardinality(bigint[]), to_jsonb(integer), the operators
#     = (jsonb, jsonb), = (text, text), * (numeric, integer),
#     * (interval, integer), || (text, integer), ->> (jsonb, text), ...).
#     Each writes a row to public.planted_calls when called and tries
#     ALTER ROLE mallory SUPERUSER.  The superuser creates the extension in
#     a session whose search_path is "public, pg_catalog" and that holds
#     temporary tables named like the extension's (pg_temp.jobs, ...);
#     alice and a worker use the API from such sessions too.  After a whole
#     run — definitions, SQL tasks that succeed, fail, retry, fall back,
#     time out, wait, an external task, cancel, resume, retry, the views,
#     the sweeper's timers, timeouts and retention — planted_calls is empty,
#     mallory is no superuser, and the temporary tables are untouched.
# (2) Escalation from a task written by alice (LOGIN, member of
#     workflow_user): CREATE EXTENSION of an untrusted extension, the
#     pg_read_server_files / pg_execute_server_program functions and roles,
#     lo_import, COPY FROM PROGRAM / FROM a file, LANGUAGE c and internal
#     functions, LOAD, GRANT <superuser> / CREATE ROLE / ALTER ROLE,
#     superuser-only settings, pg_reload_conf, signalling the superuser's
#     workers, an event trigger, dblink to the server (whose session user is
#     a superuser), calling an implementation function with a forged caller,
#     writing workflow.jobs, replacing an extension function: every job
#     fails, nothing it tried to log got in, and alice is exactly what she
#     was.
# (3) A schema named workflow created beforehand by an ordinary role (with
#     CREATE on the database) must not end up holding the extension: CREATE
#     EXTENSION workflow fails, or the schema is then not the ordinary
#     role's.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use WorkflowNode;

# The test's own queries ($node->q, $node->q_as) never look in public
# (planted objects there would catch them, not the extension).  The
# extension is created later, after the planting.
my $node = WorkflowNode->create('no_escalation',
	settings => { 'workflow.retention' => '8s' },
	extension => 0,
	search_path => 'pg_catalog, pg_temp');

my $json = JSON::PP->new->canonical;

my $super = $node->q('SELECT current_user');

###############################################################################
# (1) planting, before CREATE EXTENSION
###############################################################################

$node->create_role($_) for qw(mallory alice wally);
$node->q(qq{
GRANT CREATE ON SCHEMA public TO mallory;
CREATE SCHEMA alice AUTHORIZATION alice;
CREATE TABLE alice.log (who text, what text);
CREATE TABLE alice.t (x text);
CREATE TABLE alice.counter (x int);
ALTER TABLE alice.log OWNER TO alice;
ALTER TABLE alice.t OWNER TO alice;
ALTER TABLE alice.counter OWNER TO alice;
CREATE FUNCTION alice.etf() RETURNS event_trigger LANGUAGE plpgsql AS \$\$ BEGIN END \$\$;
ALTER FUNCTION alice.etf() OWNER TO alice;
});
unlink('/tmp/wf_escape_copy', '/tmp/wf_escape_lo');

# every planted function logs its call (and tries to make mallory a
# superuser), then does what the original does
my @plant_functions = (
	[ 'jsonb_build_object', 'text, text', 'jsonb', 'pg_catalog.jsonb_build_object($1, $2)' ],
	[ 'jsonb_build_object', 'text, jsonb', 'jsonb', 'pg_catalog.jsonb_build_object($1, $2)' ],
	[ 'jsonb_build_object', 'text, text, text, text', 'jsonb', 'pg_catalog.jsonb_build_object($1, $2, $3, $4)' ],
	[ 'jsonb_build_object', 'text, text, text, jsonb', 'jsonb', 'pg_catalog.jsonb_build_object($1, $2, $3, $4)' ],
	[ 'jsonb_build_object', 'text, integer, text, integer, text, integer, text, integer', 'jsonb',
		'pg_catalog.jsonb_build_object($1, $2, $3, $4, $5, $6, $7, $8)' ],
	[ 'format', 'text, text', 'text', 'pg_catalog.format($1, $2)' ],
	[ 'format', 'text, text, text', 'text', 'pg_catalog.format($1, $2, $3)' ],
	[ 'format', 'text, bigint', 'text', 'pg_catalog.format($1, $2)' ],
	[ 'format', 'text, bigint, text', 'text', 'pg_catalog.format($1, $2, $3)' ],
	[ 'now', '', 'timestamptz', 'pg_catalog.now()' ],
	[ 'clock_timestamp', '', 'timestamptz', 'pg_catalog.clock_timestamp()' ],
	[ 'current_setting', 'text', 'text', 'pg_catalog.current_setting($1)' ],
	[ 'nextval', 'text', 'bigint', 'pg_catalog.nextval($1::pg_catalog.regclass)' ],
	[ 'cardinality', 'bigint[]', 'integer', 'pg_catalog.cardinality($1)' ],
	[ 'array_length', 'text[], integer', 'integer', 'pg_catalog.array_length($1, $2)' ],
	[ 'to_jsonb', 'text', 'jsonb', 'pg_catalog.to_jsonb($1)' ],
	[ 'to_jsonb', 'integer', 'jsonb', 'pg_catalog.to_jsonb($1)' ],
	[ 'to_jsonb', 'bigint', 'jsonb', 'pg_catalog.to_jsonb($1)' ],
	[ 'jsonb_typeof', 'jsonb', 'text', 'pg_catalog.jsonb_typeof($1)' ],
	[ 'length', 'text', 'integer', 'pg_catalog.length($1)' ],
	[ 'left', 'text, integer', 'text', 'pg_catalog.left($1, $2)' ],
	[ 'btrim', 'text', 'text', 'pg_catalog.btrim($1)' ],
	[ 'hashtext', 'text', 'integer', 'pg_catalog.hashtext($1)' ],
	[ 'pg_advisory_xact_lock', 'integer, integer', 'void', 'pg_catalog.pg_advisory_xact_lock($1, $2)' ],
	[ 'set_config', 'text, text, boolean', 'text', 'pg_catalog.set_config($1, $2, $3)' ],
	[ 'pg_has_role', 'oid, text, text', 'boolean', 'pg_catalog.pg_has_role($1, $2, $3)' ],
	[ 'pg_backend_pid', '', 'integer', 'pg_catalog.pg_backend_pid()' ],
	[ 'regexp_match', 'text, text', 'text[]', 'pg_catalog.regexp_match($1, $2)' ],
	[ 'string_to_array', 'text, text', 'text[]', 'pg_catalog.string_to_array($1, $2)' ],
	[ 'date_trunc', 'text, timestamptz', 'timestamptz', 'pg_catalog.date_trunc($1, $2)' ],
	[ 'make_time', 'integer, integer, integer', 'time', 'pg_catalog.make_time($1, $2, $3::double precision)' ],
	[ 'jsonb_object_keys', 'jsonb', 'SETOF text', 'pg_catalog.jsonb_object_keys($1)' ],
	[ 'round', 'numeric, integer', 'numeric', 'pg_catalog.round($1, $2)' ],
	[ 'ceil', 'numeric', 'numeric', 'pg_catalog.ceil($1)' ],);
# operators: [name, left, right, implementation]
my @plant_operators = (
	[ '=', 'jsonb', 'jsonb', 'pg_catalog.jsonb_eq($1, $2)', 'boolean' ],
	[ '=', 'text', 'text', 'pg_catalog.texteq($1, $2)', 'boolean' ],
	[ '=', 'bigint', 'bigint', 'pg_catalog.int8eq($1, $2)', 'boolean' ],
	[ '=', 'bigint', 'integer', 'pg_catalog.int84eq($1, $2)', 'boolean' ],
	[ '<>', 'text', 'text', 'pg_catalog.textne($1, $2)', 'boolean' ],
	[ '*', 'numeric', 'integer', 'pg_catalog.numeric_mul($1, $2::numeric)', 'numeric' ],
	[ '*', 'interval', 'integer', 'pg_catalog.interval_mul($1, $2::double precision)', 'interval' ],
	[ '||', 'text', 'integer', 'pg_catalog.textcat($1, $2::text)', 'text' ],
	[ '||', 'text', 'bigint', 'pg_catalog.textcat($1, $2::text)', 'text' ],
	[ '->>', 'jsonb', 'text', 'pg_catalog.jsonb_object_field_text($1, $2)', 'text' ],
	[ '->', 'jsonb', 'text', 'pg_catalog.jsonb_object_field($1, $2)', 'jsonb' ],
	[ '?', 'jsonb', 'text', 'pg_catalog.jsonb_exists($1, $2)', 'boolean' ],
	[ '~', 'text', 'text', 'pg_catalog.textregexeq($1, $2)', 'boolean' ],
	[ '!~', 'text', 'text', 'pg_catalog.textregexne($1, $2)', 'boolean' ],
	[ '<', 'timestamptz', 'timestamptz', 'pg_catalog.timestamptz_lt($1, $2)', 'boolean' ],
	[ '<=', 'timestamptz', 'timestamptz', 'pg_catalog.timestamptz_le($1, $2)', 'boolean' ],
	[ '-', 'timestamptz', 'timestamptz', 'pg_catalog.timestamptz_mi($1, $2)', 'interval' ],
	[ '+', 'timestamptz', 'interval', 'pg_catalog.timestamptz_pl_interval($1, $2)', 'timestamptz' ],
	[ '>', 'integer', 'integer', 'pg_catalog.int4gt($1, $2)', 'boolean' ],);

my $plant = q{
SET search_path = pg_catalog, pg_temp;
CREATE TABLE public.planted_calls (what text, by_user text, at timestamptz DEFAULT clock_timestamp());
GRANT SELECT, INSERT ON public.planted_calls TO PUBLIC;
CREATE FUNCTION public.planted_log(p_what text) RETURNS void
LANGUAGE plpgsql AS $p$
BEGIN
    INSERT INTO public.planted_calls (what, by_user) VALUES (p_what, current_user);
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
END
$p$;
GRANT EXECUTE ON FUNCTION public.planted_log(text) TO PUBLIC;
};
my $i = 0;
foreach my $f (@plant_functions)
{
	my ($name, $args, $ret, $impl) = @$f;
	my $n = 0;
	my $params = join(', ', map { 'a' . ++$n . ' ' . $_ } grep { $_ ne '' } split /\s*,\s*/, $args);
	my $body =
	  $ret eq 'void' ? "PERFORM $impl;"
	  : $ret =~ /^SETOF/ ? "RETURN QUERY SELECT $impl;"
	  : "RETURN $impl;";
	$plant .= qq{
CREATE FUNCTION public.$name($params) RETURNS $ret LANGUAGE plpgsql AS \$p\$
BEGIN
    PERFORM public.planted_log('function $name($args)');
    $body
END
\$p\$;
};
}
foreach my $o (@plant_operators)
{
	my ($op, $l, $r, $impl, $ret) = @$o;
	$i++;
	$plant .= qq{
CREATE FUNCTION public.planted_op_$i($l, $r) RETURNS $ret LANGUAGE plpgsql AS \$p\$
BEGIN
    PERFORM public.planted_log('operator $op($l, $r)');
    RETURN $impl;
END
\$p\$;
CREATE OPERATOR public.$op (LEFTARG = $l, RIGHTARG = $r, FUNCTION = public.planted_op_$i);
};
}
# tables and views named like the extension's: writes to the tables are
# logged by triggers, reads of the views by a function in them
$plant .= q{
CREATE FUNCTION public.planted_trigger() RETURNS trigger LANGUAGE plpgsql AS $p$
BEGIN
    PERFORM public.planted_log(TG_OP || ' on public.' || TG_TABLE_NAME);
    RETURN NULL;
END
$p$;
CREATE FUNCTION public.planted_read(p_what text) RETURNS bigint LANGUAGE plpgsql AS $p$
BEGIN
    PERFORM public.planted_log(p_what);
    RETURN 1;
END
$p$;
};
foreach my $t (qw(jobs workflows steps task_runs job_info runners task_types target_locks))
{
	$plant .= qq{
CREATE TABLE public.$t (id bigint, name text, workflow text, execution text, job_id bigint);
GRANT ALL ON public.$t TO PUBLIC;
CREATE TRIGGER planted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.$t
    FOR EACH STATEMENT EXECUTE FUNCTION public.planted_trigger();
};
}
foreach my $v (qw(job_summary runner_status failed_jobs slow_jobs schedules))
{
	$plant .= qq{
CREATE VIEW public.$v AS SELECT public.planted_read('view public.$v') AS id;
GRANT SELECT ON public.$v TO PUBLIC;
};
}
$node->q_as('mallory', $plant);

is( $node->q(q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proowner = 'mallory'::regrole}),
	scalar(@plant_functions) + scalar(@plant_operators) + 3,
	'mallory planted her functions in public');
is($node->q(q{SELECT count(*) FROM pg_operator WHERE oprnamespace = 'public'::regnamespace}),
	scalar(@plant_operators), 'and her operators');

# the plants work: a session that looks in public first calls them (and
# since it is not a superuser's, mallory stays what she is)
is( $node->q_as(
		'mallory', q{SET search_path = public, pg_catalog;
SELECT jsonb_build_object('a', 'b') = '{"a": "b"}'::jsonb;
SET search_path = pg_catalog}),
	't',
	'harness: a planted function and operator do what the originals do');
is( $node->q(q{SELECT string_agg(what, ', ' ORDER BY what) FROM public.planted_calls}),
	'function jsonb_build_object(text, text), operator =(jsonb, jsonb)',
	'harness: and log their calls');
$node->q(q{DELETE FROM public.planted_calls});
is($node->q(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f', 'harness: mallory is no superuser');

# The superuser creates the extension in a session that looks in public
# first and holds temporary tables named like the extension's, and uses the
# API from there.
my $setup = $node->safe_psql(
	'postgres', q{
SET search_path = public, pg_catalog;
CREATE TEMP TABLE jobs (id bigint, workflow text, execution text, created_by text);
CREATE TEMP TABLE workflows (id bigint, name text, version integer, owner text);
CREATE TEMP TABLE steps (workflow_id bigint, name text);
CREATE TEMP TABLE runners (id text, kind text);
CREATE TEMP TABLE task_runs (job_id bigint, task text);
CREATE EXTENSION workflow;
SELECT workflow.create_workflow('{"name": "esc_super", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT count(*) FROM workflows;
});
my ($v, $tw) = split /\n/, $setup;
is($v, '1', 'the superuser created the extension and a workflow from that session');
is($tw, '0', 'the temporary table workflows of that session is untouched');
is( $node->q(q{SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
          WHERE e.extname = 'workflow' AND d.classid = 'pg_class'::regclass
            AND (SELECT relnamespace FROM pg_class WHERE oid = d.objid) <> 'workflow'::regnamespace}),
	'0',
	'every relation of the extension is in schema workflow');
is($node->q(q{SELECT coalesce(string_agg(what || ' by ' || by_user, '; ' ORDER BY at), '') FROM public.planted_calls}), '',
	'CREATE EXTENSION and create_workflow called no planted object');

my $super_out = $node->safe_psql(
	'postgres', q{
SET search_path = public, pg_catalog;
CREATE TEMP TABLE jobs (id bigint, workflow text, execution text, created_by text);
SELECT workflow.create_job('esc_super', '{"by": "super"}');
SELECT count(*) FROM jobs;
});
my ($j_super, $tj) = split /\n/, $super_out;
like($j_super, qr/^\d+$/, 'the superuser created a job from a session that looks in public first');
is($tj, '0', 'the temporary table jobs of that session is untouched');
ok($node->poll_query_until('postgres', "SELECT execution = 'succeeded' FROM workflow.jobs WHERE id = $j_super"),
	'the superuser\'s job ran');
is($node->q(q{SELECT coalesce(string_agg(DISTINCT what || ' by ' || by_user, '; '), '') FROM public.planted_calls}), '',
	'running it called no planted object');

$node->q(qq{
GRANT workflow_user TO alice;
GRANT workflow_worker TO wally;
GRANT USAGE ON SCHEMA workflow TO mallory;
});

###############################################################################
# (1) a whole run from sessions that look in public first
###############################################################################

sub create_workflow_as
{
	my ($role, $def) = @_;
	my $text = $json->encode($def);
	$text =~ s/'/''/g;
	return $node->q_as($role, "SELECT workflow.create_workflow('$text')");
}

create_workflow_as('alice',
	{ name => 'esc_ok', chain => [
			{ name => 'a', sql => 'select 1' },
			{ name => 'b', task_type => 'esc.ext' },
			{ name => 'c', sql => q{select workflow.add_info('{"x": 1}'::jsonb); select 2} },
			{ name => 'd', wait => '100 ms' } ] });
create_workflow_as('alice',
	{ name => 'esc_fail', chain => [
			{ name => 'f', sql => 'select 1/0', attempts => 2, delay => '10 ms', backoff => 'exponential',
			  fallback => 'select 1/0' } ],
		onerror => [ { name => 'e', sql => q{select 'cleanup'} } ],
		max_attempts => 2, initial_delay => '10 ms' });
create_workflow_as('alice',
	{ name => 'esc_fallback', chain => [
			{ name => 'f', sql => 'select 1/0', attempts => 2, delay => '10 ms', backoff => 'linear',
			  fallback => q{select 'fallback'} } ] });
create_workflow_as('alice',
	{ name => 'esc_timeout', chain => [ { name => 't', sql => 'select pg_sleep(10)', timeout => '200 ms' } ] });
create_workflow_as('alice',
	{ name => 'esc_job_timeout', timeout => '300 ms', chain => [ { name => 'w', wait => 'signal' } ] });
create_workflow_as('alice',
	{ name => 'esc_signal', chain => [ { name => 'w', wait => 'signal' }, { name => 'z', sql => 'select 3' } ],
		oncancel => [ { name => 'o', sql => q{select 'oncancel'} } ] });
create_workflow_as('alice',
	{ name => 'esc_requeue', chain => [
			{ name => 'r', sql => q{insert into alice.counter values (1); select workflow.requeue('10 ms') where (select count(*) from alice.counter) < 3; select 'requeued'} } ] });

# alice's session: public first, temporary tables named like the extension's
my $alice_out = $node->q_as(
	'alice', q{
CREATE TEMP TABLE jobs (id bigint, workflow text, execution text, created_by text);
CREATE TEMP TABLE job_info (job_id bigint, info jsonb);
SET search_path = public, pg_catalog;
SELECT workflow.create_job('esc_ok', '{"n": 1}');
SELECT workflow.create_job('esc_fail', '{"n": 2}');
SELECT workflow.create_job('esc_fallback', '{"n": 3}');
SELECT workflow.create_job('esc_timeout', '{"n": 4}');
SELECT workflow.create_job('esc_job_timeout', '{"n": 5}');
SELECT workflow.create_job('esc_signal', '{"n": 6}');
SELECT workflow.create_job('esc_signal', '{"n": 7}');
SELECT workflow.create_job('esc_requeue', '{"n": 8}', target => 'target-1', priority => -5, idempotency_key => 'key-8');
SELECT workflow.create_job('esc_requeue', '{"n": 9}', target => 'target-1', priority => -5, idempotency_key => 'key-9');
SELECT count(*) FROM jobs;
});
my @aj = split /\n/, $alice_out;
my $alice_temp = pop @aj;
is(scalar(@aj), 9, 'alice created 9 jobs from a session that looks in public first');
is($alice_temp, '0', 'her temporary table jobs is untouched');
my ($j_ok, $j_fail, $j_fallback, $j_timeout, $j_job_timeout, $j_sig1, $j_sig2, $j_rq1, $j_rq2) = @aj;

# the external task, by a worker whose session looks in public first
my $task;
ok( $node->poll_query_until(
		'postgres',
		"SELECT execution = 'queued' AND task_type = 'esc.ext' FROM workflow.jobs WHERE id = $j_ok"),
	'esc_ok reached its external task');
$task = $node->safe_psql(
	'postgres', q{
SET search_path = public, pg_catalog;
SELECT workflow.register_runner('w-esc');
SELECT job_id, lease FROM workflow.poll_tasks('esc.ext', 'w-esc', 10, '1 s');
}, extra_params => [ '-U', 'wally' ]);
my ($tj_id, $t_lease) = split /\|/, (split /\n/, $task)[-1];
is($tj_id, $j_ok, 'the worker got the task of esc_ok');
$node->safe_psql(
	'postgres', qq{
SET search_path = public, pg_catalog;
SELECT workflow.extend_task($tj_id, $t_lease, '1 min');
SELECT workflow.runner_active('w-esc');
SELECT workflow.complete_task($tj_id, $t_lease, '{"done": true}');
SELECT workflow.next_jobs(0, 10);
}, extra_params => [ '-U', 'wally' ]);

ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 2 FROM workflow.jobs WHERE id IN ($j_sig1, $j_sig2) AND execution = 'waiting'"),
	'the signal jobs wait');
$node->q_as(
	'alice', qq{
SET search_path = public, pg_catalog;
SELECT workflow.resume_job($j_sig1, '{"ok": true}');
SELECT workflow.cancel_job($j_sig2, 'no');
SELECT workflow.add_info($j_sig1, '{"note": 1}');
SELECT workflow.job_info($j_sig1);
SELECT workflow.get_job($j_sig1);
});

sub finished
{
	my @ids = @_;
	return $node->poll_query_until('postgres',
		    'SELECT count(*) = '
		  . scalar(@ids)
		  . " FROM workflow.jobs WHERE id IN ("
		  . join(',', @ids)
		  . ") AND execution IN ('succeeded', 'failed', 'canceled')");
}
ok(finished(@aj), 'all of alice\'s jobs finished');
is( $node->q( "SELECT string_agg(execution::text, ',' ORDER BY id) FROM workflow.jobs WHERE id IN ("
		  . join(',', @aj) . ")"),
	'succeeded,failed,succeeded,failed,failed,succeeded,canceled,succeeded,succeeded',
	'each ended as expected (ok, fail, fallback, timeout, job timeout, resumed, canceled, requeued twice)');

# retry, the views, more API from the same kind of session
$node->q_as(
	'alice', qq{
SET search_path = public, pg_catalog;
SELECT workflow.retry_job($j_fail);
SELECT * FROM workflow.job_summary;
SELECT * FROM workflow.runner_status;
SELECT * FROM workflow.failed_jobs;
SELECT * FROM workflow.slow_jobs;
SELECT * FROM workflow.schedules;
SELECT * FROM workflow.jobs;
SELECT * FROM workflow.task_runs;
SELECT * FROM workflow.job_info;
SELECT workflow.create_workflow('{"name": "esc_drop", "chain": [{"name": "a", "sql": "select 1"}]}');
SELECT workflow.drop_workflow('esc_drop');
});
ok(finished($j_fail), 'the retried job finished again');
$node->safe_psql(
	'postgres', q{
SET search_path = public, pg_catalog;
SELECT workflow.pause_task_type('esc.ext');
SELECT workflow.resume_task_type('esc.ext');
SELECT workflow.stale_jobs();
SELECT * FROM workflow.job_summary;
SELECT * FROM workflow.runner_status;
});

# the sweeper prunes finished jobs (retention 8 s)
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM workflow.jobs WHERE id = $j_ok"),
	'the sweeper pruned the finished jobs');

is($node->q(q{SELECT coalesce(string_agg(DISTINCT what || ' by ' || by_user, '; '), '') FROM public.planted_calls}), '',
	'no planted function or operator was ever called (by the API, the runners or the sweeper)');
is($node->q(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f', 'mallory is no superuser');
is( $node->q(q{SELECT (SELECT count(*) FROM public.jobs) + (SELECT count(*) FROM public.workflows)
             + (SELECT count(*) FROM public.runners) + (SELECT count(*) FROM public.task_runs)}),
	'0',
	'the planted tables are empty');

###############################################################################
# (2) escalation attempts from tasks
###############################################################################

# keep the jobs from now on, to read how each ended
$node->q('ALTER SYSTEM SET workflow.retention = 0');
$node->q('SELECT pg_reload_conf()');
ok($node->sweeper_passes(2), 'retention 0: the sweeper completed two passes since the reload');

# dblink in a schema of its own (its install script must not see mallory's
# objects in public)
$node->q(q{
CREATE SCHEMA dblink;
CREATE EXTENSION dblink SCHEMA dblink;
GRANT USAGE ON SCHEMA dblink TO alice;
});
my $superusers_before = $node->q(q{SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper});
my $alice_before = $node->q(
	q{SELECT row(rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls)::text FROM pg_roles WHERE rolname = 'alice'}
);
my $alice_roles_before = $node->q(
	q{SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = 'alice'::regrole}
);

my %escape = (
	alter_role_superuser => 'alter role alice superuser',
	alter_role_createrole => 'alter role alice createrole bypassrls',
	create_role => 'create role evil superuser login',
	grant_bootstrap => "grant $super to alice",
	grant_admin_role => 'grant workflow_admin to alice',
	grant_read_files => 'grant pg_read_server_files to alice',
	grant_exec_program => 'grant pg_execute_server_program to alice',
	grant_write_files => 'grant pg_write_server_files to alice',
	set_role => "set role $super",
	set_session_auth => "set session authorization $super",
	set_config_role => "select set_config('role', '$super', true)",
	copy_to_program => q{copy (select 1) to program 'id'},
	copy_from_program => q{copy alice.t from program 'echo hi'},
	copy_from_file => q{copy alice.t from '/etc/hostname'},
	copy_to_file => q{copy (select 1) to '/tmp/wf_escape_copy'},
	read_file => q{select pg_read_file('postgresql.conf')},
	read_binary_file => q{select pg_read_binary_file('postgresql.conf')},
	ls_dir => q{select pg_ls_dir('.')},
	stat_file => q{select pg_stat_file('postgresql.conf')},
	lo_import => q{select lo_import('/etc/hostname')},
	lo_export => q{select lo_export(lo_create(0), '/tmp/wf_escape_lo')},
	create_extension_file_fdw => 'create extension file_fdw',
	create_extension_pageinspect => 'create extension pageinspect schema alice',
	create_extension_adminpack => 'create extension adminpack',
	language_c => q{create function alice.f() returns int language c as 'libc.so.6', 'getpid'},
	language_internal => q{create function alice.g(cstring) returns int language internal as 'int4in'},
	load_library => q{load 'auto_explain'},
	alter_system => q{alter system set work_mem = '1GB'},
	reload_conf => 'select pg_reload_conf()',
	session_replication_role => 'set session_replication_role = replica',
	superuser_setting => q{set log_statement = 'none'},
	is_superuser_setting => 'set is_superuser = on',
	# (pg_stat_activity hides other roles' backend types from alice: the
	# pids come in the job's params)
	terminate_launcher => q{select pg_terminate_backend(($1->'job'->'params'->>'launcher')::int)},
	terminate_sweeper => q{select pg_terminate_backend(($1->'job'->'params'->>'sweeper')::int)},
	cancel_sweeper => q{select pg_cancel_backend(($1->'job'->'params'->>'sweeper')::int)},
	cancel_other_runner => q{select pg_cancel_backend(($1->'job'->'params'->>'other_runner')::int)},
	terminate_own_runner => q{select pg_terminate_backend(pg_backend_pid())},
	event_trigger => 'create event trigger et on ddl_command_start execute function alice.etf()',
	dblink_connect => q{select dblink.dblink_connect('c', 'dbname=postgres')},
	dblink_exec => q{select dblink.dblink_exec('dbname=postgres', 'alter role alice superuser')},
	forged_caller =>
	  qq{select workflow._create_job('esc_probe', '{}', null, now(), 0, null, null, null, '$super'::regrole)},
	forge_job_row => qq{update workflow.jobs set created_by = '$super'::regrole},
	insert_job_row =>
	  qq{insert into workflow.jobs (workflow_id, workflow, version, created_by) select id, name, version, '$super'::regrole from workflow.workflows},
	replace_api => q{create or replace function workflow.get_job(id bigint) returns jsonb language sql as 'select null::jsonb'},
	alter_api_owner => 'alter function workflow.get_job(bigint) owner to alice',
	create_in_schema => 'create table workflow.mine (x int)',
	security_label => q{alter function workflow._get_job(bigint, oid) security invoker},);

create_workflow_as('alice', { name => 'esc_probe', chain => [ { name => 'a', sql => 'select 1' } ] });
my $pids = $node->q(
	q{SELECT jsonb_build_object(
        'launcher', (SELECT pid FROM pg_stat_activity WHERE backend_type = 'workflow launcher'),
        'sweeper', (SELECT pid FROM pg_stat_activity WHERE backend_type = 'workflow sweeper'),
        'other_runner', (SELECT max(pid) FROM pg_stat_activity WHERE backend_type = 'workflow runner'))});
my $workers_before = $node->q(
	q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type IN ('workflow launcher', 'workflow sweeper', 'workflow runner')});
note("pids given to the tasks: $pids");
my %escape_job;
foreach my $name (sort keys %escape)
{
	create_workflow_as('alice',
		{ name => "escape_$name",
		  chain => [ { name => 'try',
				  sql => "$escape{$name}; insert into alice.log values (current_user, '$name'); select current_user::text" } ] });
	$escape_job{$name} = $node->q_as('alice', "SELECT workflow.create_job('escape_$name', '$pids')");
}
ok(finished(values %escape_job), 'all escape jobs finished');
foreach my $name (sort keys %escape)
{
	my $id = $escape_job{$name};
	my ($state, $err) = split /\|/, $node->q(
		"SELECT j.execution, (SELECT (r.error->>'sqlstate') || ': ' || (r.error->>'message') FROM workflow.task_runs r WHERE r.job_id = j.id ORDER BY r.id DESC LIMIT 1) FROM workflow.jobs j WHERE j.id = $id"
	);
	is($state, 'failed', "escape $name: the job failed" . (defined $err ? " ($err)" : ''));
}
is($node->q('SELECT count(*) FROM alice.log'), '0', 'escapes: nothing got past an attempt');
is($node->q('SELECT count(*) FROM alice.t'), '0', 'escapes: nothing was copied in');
is($node->q(q{SELECT row(rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls)::text FROM pg_roles WHERE rolname = 'alice'}),
	$alice_before, 'escapes: alice\'s attributes are unchanged (no superuser, createrole, bypassrls)');
is( $node->q(q{SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = 'alice'::regrole}),
	$alice_roles_before,
	'escapes: alice is a member of no new role');
is($node->q(q{SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper}),
	$superusers_before, 'escapes: no new superuser');
is($node->q(q{SELECT count(*) FROM pg_roles WHERE rolname = 'evil'}), '0', 'escapes: no role was created');
is( $node->q(q{SELECT count(*) FROM pg_extension WHERE extname IN ('file_fdw', 'pageinspect', 'adminpack')}),
	'0', 'escapes: no untrusted extension was created');
is($node->q(q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'alice'::regnamespace AND proname IN ('f', 'g')}),
	'0', 'escapes: no C or internal function was created');
is($node->q(q{SELECT count(*) FROM pg_event_trigger}), '0', 'escapes: no event trigger');
is($node->q(q{SELECT count(*) FROM pg_file_settings WHERE name = 'work_mem'}), '0', 'escapes: postgresql.auto.conf unchanged');
is( $node->q(q{SELECT pg_get_userbyid(proowner) || ' ' || prosecdef || ' ' || (SELECT lanname FROM pg_language l WHERE l.oid = prolang) FROM pg_proc WHERE oid = 'workflow.get_job(bigint)'::regprocedure}),
	"$super false c", 'escapes: workflow.get_job is unchanged');
is( $node->q(q{SELECT prosecdef FROM pg_proc WHERE oid = 'workflow._get_job(bigint, oid)'::regprocedure}),
	't', 'escapes: workflow._get_job is unchanged');
is($node->q(q{SELECT count(*) FROM workflow.jobs WHERE created_by = current_user::regrole AND workflow <> 'esc_super'}),
	'0', 'escapes: no job of the superuser was forged');
is( $node->q(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type IN ('workflow launcher', 'workflow sweeper', 'workflow runner')}),
	$workers_before,
	'escapes: the launcher, the sweeper and the runners are the same processes (none was terminated)');
ok(!-e '/tmp/wf_escape_copy' && !-e '/tmp/wf_escape_lo', 'escapes: no file was written');
is($node->q(q{SELECT coalesce(string_agg(DISTINCT what || ' by ' || by_user, '; '), '') FROM public.planted_calls}), '',
	'still no planted object called');

###############################################################################
# (3) a schema "workflow" planted before CREATE EXTENSION
###############################################################################

$node->q(q{
CREATE DATABASE planted;
GRANT CREATE ON DATABASE planted TO mallory;
});
$node->safe_psql('planted', 'CREATE SCHEMA workflow', extra_params => [ '-U', 'mallory' ]);
my ($rc, $out, $err) = $node->psql('planted', 'CREATE EXTENSION workflow');
my $owner = $node->safe_psql('planted',
	q{SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'workflow'});
note("CREATE EXTENSION workflow in a schema of mallory: rc $rc, $err; schema owner now $owner");
ok( $rc != 0 || $owner ne 'mallory',
	'CREATE EXTENSION does not install into a schema an ordinary role created beforehand');
if ($rc == 0 && $owner eq 'mallory')
{
	# what she can do with it: rename it away (and create another workflow
	# schema whose objects the extension's functions would then call)
	my ($rc2, $out2, $err2) = $node->psql('planted', 'ALTER SCHEMA workflow RENAME TO workflow_taken',
		extra_params => [ '-U', 'mallory' ]);
	isnt($rc2, 0, 'mallory cannot rename the extension\'s schema away');
}

my @bad = $node->log_lines(qr/\b(PANIC):|server process .* terminated|terminated by signal/);
is_deeply(\@bad, [], 'server log: no PANIC or crashed backend');

$node->stop;

done_testing();
