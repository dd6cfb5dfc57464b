/*-------------------------------------------------------------------------
 *
 * task.c
 *		Executing the SQL of one task as the role that created the job, and
 *		the functions a task may call while it runs: workflow.requeue(),
 *		workflow.wait() and workflow.add_info(info).
 *
 * The caller (src/runner.c) has started the batch's transaction and opened
 * the job's subtransaction (workflow_task_begin(), in which it checked that
 * the job is still its own).  The body runs in it, so that its failure
 * rolls back its effects but not the transaction that records the failure,
 * nor the other jobs of the batch; a failed body's subtransaction is rolled
 * back here.  When the body succeeds the subtransaction is left open: the
 * runner records the outcome inside it and then keeps it
 * (workflow_task_finish(true)) or, when the job was canceled or handed
 * over meanwhile, rolls it back with the task's effects
 * (workflow_task_finish(false)).  Inside the subtransaction:
 *
 *	- the current user becomes the job's creator, with
 *	  SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION, the way
 *	  PostgreSQL runs maintenance code as a table owner: SET ROLE and SET
 *	  SESSION AUTHORIZATION are refused, and so is everything that would
 *	  outlive the task in the runner's session (temporary tables, PREPARE,
 *	  LISTEN, cursors WITH HOLD);
 *	- a new GUC nest level pins search_path to the workflow's and reverts
 *	  every SET the task makes;
 *	- the statement timeout is armed by hand (SPI does not), with the
 *	  smaller of the task's timeout and what is left of the job's;
 *	- every constraint is immediate while the body runs (SET CONSTRAINTS
 *	  ALL IMMEDIATE, set before the switch): the checks of a DEFERRABLE
 *	  INITIALLY DEFERRED foreign key or constraint trigger fire at the end
 *	  of the task's statement that queued them, as its creator and inside
 *	  the job's subtransaction, so that a violation fails that task alone
 *	  (with its SQLSTATE, e.g. 23503) and none of them runs as the
 *	  runner's superuser at commit.  Deferring them further is not
 *	  possible: PostgreSQL refuses to queue a deferred trigger past the
 *	  end of a statement inside a security-restricted operation, so a task
 *	  that says SET CONSTRAINTS ... DEFERRED itself fails with that error
 *	  (42501).  The setting outlives the task in the batch's transaction,
 *	  whose bookkeeping tables have no deferrable constraint;
 *	- session-level advisory locks the task took are released afterwards.
 *
 * The output is the first column of the first row of the last statement,
 * converted to jsonb; like everything workflow.add_info() adds in one
 * attempt, it is bounded by workflow.max_payload_size.  The body ends with
 * workflow_task_running cleared and any cancel that arrived too late for
 * it dropped.  Before a task of another role than the last one, random()
 * is reseeded from a strong random source.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_task_requeue);
PG_FUNCTION_INFO_V1(workflow_task_wait);
PG_FUNCTION_INFO_V1(workflow_task_add_info);

/* the task being executed by this backend, for the functions above */
static int64 current_job = 0;

/*
 * True while the body of a task runs (set by the runner just before,
 * cleared here as soon as the body is over): only then is a cancel meant
 * for the task (see src/runner.c).
 */
volatile sig_atomic_t workflow_task_running = false;

/* the role whose task last ran: the PRNG is reseeded when it changes */
static Oid	random_seeded_for = InvalidOid;

/* the size of what workflow.add_info() added in this task attempt */
static Size current_info_size = 0;

/* the open subtransaction of a task that succeeded, until it is finished */
static bool task_subxact_open = false;
static MemoryContext task_outer_context = NULL;
static ResourceOwner task_outer_owner = NULL;
static WorkflowTaskRequest current_request = WF_TASK_DONE;
static int64 current_requeue_ms = 0;
static List *current_info = NIL;
static MemoryContext current_result_context = NULL;

static WorkflowPlanMode plan_mode_of(const char *body);
static void constraints_immediate(void);
static Datum output_to_jsonb(Datum value, Oid type, MemoryContext target);
static void execute_body(WorkflowTaskDef *step, Datum context);
static Datum first_value_as_output(MemoryContext context);
static Datum error_to_jsonb(ErrorData *edata);
static Datum info_array(List *infos);
static void require_task(const char *function);
static void reseed_random(Oid owner);

/*
 * Open the subtransaction of a job's task (or of the record of its
 * outcome), in which the runner first checks that the job is still its
 * own: an error anywhere inside it rolls back only this job's work.  Ended
 * by workflow_execute_task() when the body fails, otherwise by
 * workflow_task_finish().
 */
void
workflow_task_begin(void)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	Assert(!task_subxact_open);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	task_outer_context = oldcontext;
	task_outer_owner = oldowner;
	task_subxact_open = true;
}

/*
 * Execute `body' with `context' as $1, as role `owner', with `search_path'
 * pinned and at most `timeout_ms' (0 = no limit), inside the subtransaction
 * opened by workflow_task_begin().  Never raises an error for what the body
 * does: the outcome is in *result, allocated in the caller's memory context.
 * When the body fails its subtransaction is rolled back here; on success it
 * stays open until workflow_task_finish().
 */
void
workflow_execute_task(int64 job_id, WorkflowTaskDef *step, Datum context,
					  Oid owner, int timeout_ms, WorkflowTaskResult *result)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	Oid			save_userid;
	int			save_sec_context;

	memset(result, 0, sizeof(*result));
	current_job = job_id;
	current_request = WF_TASK_DONE;
	current_requeue_ms = 0;
	current_info = NIL;
	current_info_size = 0;
	current_result_context = oldcontext;

	if (!task_subxact_open)
		elog(ERROR, "workflow task executed outside its subtransaction");
	GetUserIdAndSecContext(&save_userid, &save_sec_context);

	PG_TRY();
	{
		int			nestlevel;

		/* random() of one role tells nothing about another role's */
		if (owner != random_seeded_for)
			reseed_random(owner);

		/*
		 * Before the switch: whatever an earlier statement of the batch's
		 * transaction left deferred fires as the runner, not as this
		 * task's creator.
		 */
		constraints_immediate();

		SetUserIdAndSecContext(owner, save_sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", step->search_path,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		/* the runner bounds its own lock waits, not the task's */
		(void) set_config_option("lock_timeout",
								 GetConfigOptionResetString("lock_timeout"),
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

		if (timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);

		execute_body(step, context);
		result->output = first_value_as_output(oldcontext);

		if (timeout_ms > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);

		/*
		 * The body is over.  A cancel that arrived after its last interrupt
		 * check (its own statement timeout firing just now, a late
		 * cancel_job or pg_cancel_backend) was meant for it: drop it rather
		 * than let it fail the runner's bookkeeping.
		 */
		workflow_task_running = false;
		pg_compiler_barrier();
		QueryCancelPending = false;

		AtEOXact_GUC(false, nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec_context);

		/* stay in the subtransaction: the outcome is recorded inside it */
		MemoryContextSwitchTo(oldcontext);

		result->ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the body is over: any further cancel was meant for it */
		workflow_task_running = false;
		pg_compiler_barrier();
		QueryCancelPending = false;
		disable_timeout(STATEMENT_TIMEOUT, false);

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();

		/* restores the user, the GUC nest level and the resource owner */
		RollbackAndReleaseCurrentSubTransaction();
		task_subxact_open = false;
		MemoryContextSwitchTo(task_outer_context);
		CurrentResourceOwner = task_outer_owner;

		result->ok = false;
		result->sqlerrcode = edata->sqlerrcode;
		result->error = error_to_jsonb(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	/* session-level advisory locks must not outlive the task */
	LockReleaseSession(USER_LOCKMETHOD);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	result->request = result->ok ? current_request : WF_TASK_DONE;
	result->requeue_ms = current_requeue_ms;
	result->info = current_info != NIL ? info_array(current_info) : (Datum) 0;

	current_job = 0;
	current_info = NIL;
	current_info_size = 0;
	current_result_context = NULL;
}

/*
 * Execute a task's body with its context as $1: through its kept plan
 * when it is a single plannable statement, else (utility statements,
 * several statements) through SPI_execute_with_args.
 */
static void
execute_body(WorkflowTaskDef *step, Datum context)
{
	Oid			argtypes[1] = {JSONBOID};
	Datum		values[1] = {context};
	char		nulls[1] = {context == (Datum) 0 ? 'n' : ' '};
	int			ret;

	if (step->plan_mode == WF_PLAN_UNKNOWN)
		step->plan_mode = plan_mode_of(step->body);
	if (step->plan_mode == WF_PLAN_CACHED)
	{
		if (step->plan == NULL)
		{
			SPIPlanPtr	plan = SPI_prepare(step->body, 1, argtypes);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed for a task: %s", SPI_result_code_string(SPI_result));
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "could not keep the plan of a task");
			step->plan = plan;
		}
		ret = SPI_execute_plan(step->plan, values, nulls, false, 0);
	}
	else
		ret = SPI_execute_with_args(step->body, 1, argtypes, values, nulls, false, 0);
	/* a body stored before COPY to the client was refused at definition */
	if (ret == SPI_ERROR_COPY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY FROM STDIN and COPY TO STDOUT are not possible in a task"),
				 errdetail("A task runs in a background worker, which has no client to copy data from or to."),
				 errhint("Use INSERT ... SELECT, or COPY to or from a server file or program.")));
	if (ret < 0)
		elog(ERROR, "SPI execution failed for a task: %s", SPI_result_code_string(ret));
}

/*
 * The output of the body just executed: the first column of its last
 * statement's first row as jsonb, in `context', bounded like every other
 * document (too large: the task's failure); 0 for none.
 */
static Datum
first_value_as_output(MemoryContext context)
{
	bool		isnull;
	Datum		value;
	Datum		output;

	if (SPI_tuptable == NULL || SPI_processed == 0 || SPI_tuptable->tupdesc->natts < 1)
		return (Datum) 0;
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return (Datum) 0;
	output = output_to_jsonb(value, SPI_gettypeid(SPI_tuptable->tupdesc, 1), context);
	if (output != (Datum) 0)
		workflow_check_payload_size(output, "output");
	return output;
}

/*
 * Keep (commit = true) or roll back the subtransaction opened by
 * workflow_task_begin().  Also used after an error while it was open.  A
 * no-op when it is not open.
 */
void
workflow_task_finish(bool commit)
{
	if (!task_subxact_open)
		return;
	task_subxact_open = false;
	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(task_outer_context);
	CurrentResourceOwner = task_outer_owner;
}

/*
 * Reseed the PRNG of random() (which setseed() makes predictable) from a
 * strong random source before a task of another role than the last one:
 * neither can then predict, nor recover, the other's random numbers.
 */
static void
reseed_random(Oid owner)
{
	uint64		bits;
	double		seed;

	if (!pg_strong_random(&bits, sizeof(bits)))
		elog(ERROR, "could not generate a random seed");
	/* 53 random bits, spread over [-1, 1] */
	seed = ((double) (bits >> 11) / (double) (UINT64CONST(1) << 53)) * 2.0 - 1.0;
	DirectFunctionCall1(setseed, Float8GetDatum(seed));
	random_seeded_for = owner;
}

/*
 * How to execute a task's code: one plannable statement (SELECT, INSERT,
 * UPDATE, DELETE, MERGE) keeps a prepared plan; anything else (several
 * statements, utility statements, SELECT INTO) is parsed and planned at
 * every run, statement after statement, so that a statement may use what
 * an earlier one created.  Raises the syntax error of invalid code.
 */
static WorkflowPlanMode
plan_mode_of(const char *body)
{
	List	   *stmts = raw_parser(body, RAW_PARSE_DEFAULT);
	Node	   *stmt;

	if (list_length(stmts) != 1)
		return WF_PLAN_ONESHOT;
	stmt = linitial_node(RawStmt, stmts)->stmt;
	switch (nodeTag(stmt))
	{
		case T_SelectStmt:
			return ((SelectStmt *) stmt)->intoClause == NULL ?
				WF_PLAN_CACHED : WF_PLAN_ONESHOT;
		case T_InsertStmt:
		case T_UpdateStmt:
		case T_DeleteStmt:
		case T_MergeStmt:
			return WF_PLAN_CACHED;
		default:
			return WF_PLAN_ONESHOT;
	}
}

/*
 * SET CONSTRAINTS ALL IMMEDIATE, without parsing it, for the task about to
 * run: inside a security-restricted operation PostgreSQL refuses to keep a
 * trigger deferred past the end of the statement that queued it ("cannot
 * fire deferred trigger within security-restricted operation"), so every
 * check of the task must be immediate.  Set before each task, since an
 * earlier task of the batch may have said SET CONSTRAINTS ... DEFERRED;
 * fires the deferred triggers still pending, as SET CONSTRAINTS does.
 */
static void
constraints_immediate(void)
{
	ConstraintsSetStmt *stmt = makeNode(ConstraintsSetStmt);

	stmt->constraints = NIL;
	stmt->deferred = false;
	/* pending triggers see everything done before */
	CommandCounterIncrement();
	AfterTriggerSetState(stmt);
}

/*
 * A JSON scalar parsed into jsonb.
 */
static Datum
jsonb_scalar(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

/*
 * Convert a task's output to jsonb in `target': jsonb as is, json parsed,
 * booleans, integers and text directly, void as no output (NULL), anything
 * else through to_jsonb() (with a plan kept per type).
 */
static Datum
output_to_jsonb(Datum value, Oid type, MemoryContext target)
{
	/* to_jsonb() plans by type */
	static Oid	plan_types[16];
	static SPIPlanPtr plans[16];
	static int	nplans = 0;
	Datum		jb;
	MemoryContext oldcontext;

	if (type == VOIDOID)
		return (Datum) 0;		/* select pg_sleep(1): no output */
	if (type == JSONBOID)
		jb = value;
	else if (type == JSONOID)
		jb = jsonb_scalar(TextDatumGetCString(value));
	else if (type == BOOLOID)
		jb = jsonb_scalar(DatumGetBool(value) ? "true" : "false");
	else if (type == INT2OID || type == INT4OID || type == INT8OID)
	{
		int64		n = type == INT2OID ? DatumGetInt16(value) :
			type == INT4OID ? DatumGetInt32(value) : DatumGetInt64(value);
		char		buf[32];

		snprintf(buf, sizeof(buf), INT64_FORMAT, n);
		jb = jsonb_scalar(buf);
	}
	else if (type == TEXTOID || type == VARCHAROID)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		escape_json(&buf, TextDatumGetCString(value));
		jb = jsonb_scalar(buf.data);
	}
	else
	{
		Datum		values[1];
		bool		isnull;
		int			ret;
		SPIPlanPtr	plan = NULL;
		int			i;

		for (i = 0; i < nplans; i++)
			if (plan_types[i] == type)
				plan = plans[i];
		if (plan == NULL)
		{
			Oid			argtypes[1];

			argtypes[0] = type;
			plan = SPI_prepare("SELECT pg_catalog.to_jsonb($1)", 1, argtypes);
			if (plan == NULL)
				elog(ERROR, "could not convert the output of a task to jsonb");
			if (nplans < (int) lengthof(plans) && SPI_keepplan(plan) == 0)
			{
				plan_types[nplans] = type;
				plans[nplans++] = plan;
			}
		}
		values[0] = value;
		ret = SPI_execute_plan(plan, values, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not convert the output of a task to jsonb");
		jb = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			return (Datum) 0;
	}

	oldcontext = MemoryContextSwitchTo(target);
	jb = PointerGetDatum(PG_DETOAST_DATUM_COPY(jb));
	MemoryContextSwitchTo(oldcontext);
	return jb;
}

/* longest message, detail, hint or context of an error kept in task_runs */
#define ERROR_FIELD_MAX 8192

/*
 * Append `"key": "value"' to a JSON object being built, skipping NULLs;
 * the value is cut at ERROR_FIELD_MAX bytes (a task's RAISE can make it
 * as large as it likes; the record must not fail for that).
 */
static void
append_field(StringInfo buf, bool *first, const char *key, const char *value)
{
	int			len;

	if (value == NULL)
		return;
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	len = strlen(value);
	if (len > ERROR_FIELD_MAX)
		value = pnstrdup(value, pg_mbcliplen(value, len, ERROR_FIELD_MAX));
	escape_json(buf, value);
}

/*
 * An error as stored in task_runs.error: sqlstate, message, detail, hint,
 * context.
 */
static Datum
error_to_jsonb(ErrorData *edata)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	append_field(&buf, &first, "sqlstate", unpack_sql_state(edata->sqlerrcode));
	append_field(&buf, &first, "message", edata->message);
	append_field(&buf, &first, "detail", edata->detail);
	append_field(&buf, &first, "hint", edata->hint);
	append_field(&buf, &first, "context", edata->context);
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * The jsonb[] of the infos a task added.
 */
static Datum
info_array(List *infos)
{
	int			n = list_length(infos);
	Datum	   *elems = palloc(sizeof(Datum) * n);
	ListCell   *lc;
	int			i = 0;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	foreach(lc, infos)
		elems[i++] = PointerGetDatum(lfirst(lc));
	get_typlenbyvalalign(JSONBOID, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, n, JSONBOID, typlen, typbyval, typalign));
}

/*
 * Refuse a task function called outside a task.
 */
static void
require_task(const char *function)
{
	if (current_job == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s can only be called from a task executed by a workflow runner",
						function),
				 errhint("Outside a task, use workflow.add_info(id, info), workflow.cancel_job() or workflow.resume_job().")));
}

/*
 * workflow.requeue(after interval): when the task ends, queue the job
 * again at the same task, after the delay (the task is run again then).
 * The delay must be between 0 and 100 years, like every interval a user
 * gives the extension.
 */
Datum
workflow_task_requeue(PG_FUNCTION_ARGS)
{
	int64		ms = 0;

	require_task("workflow.requeue()");
	/* rounded up: a delay of 1 us still waits */
	if (!PG_ARGISNULL(0))
		ms = workflow_interval_ms(PG_GETARG_INTERVAL_P(0));
	if (ms < 0 || ms > WF_MAX_INTERVAL_USECS / 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("requeue delay must be between 0 and 100 years")));
	current_request = WF_TASK_REQUEUE;
	current_requeue_ms = ms;
	PG_RETURN_VOID();
}

/*
 * workflow.wait(): when the task ends, park the job as waiting until
 * workflow.resume_job() is called for it.
 */
Datum
workflow_task_wait(PG_FUNCTION_ARGS)
{
	require_task("workflow.wait()");
	current_request = WF_TASK_WAIT;
	PG_RETURN_VOID();
}

/*
 * workflow.add_info(info jsonb): append progress information to the job;
 * it is stored with the task's outcome, in the same transaction.  Each
 * document, and all of them together, are bounded by
 * workflow.max_payload_size: the task fails (SQLSTATE 54000) instead of
 * making its runner build an unbounded array.
 */
Datum
workflow_task_add_info(PG_FUNCTION_ARGS)
{
	MemoryContext oldcontext;
	Jsonb	   *info;
	Size		size;

	require_task("workflow.add_info()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("info must not be null")));
	workflow_check_payload_size(PG_GETARG_DATUM(0), "info");
	/* and so is all the information one task attempt adds */
	size = toast_raw_datum_size(PG_GETARG_DATUM(0)) - VARHDRSZ;
	if (current_info_size + size > (Size) workflow_max_payload_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload too large: info"),
				 errdetail("The information added by this task attempt would total %zu bytes; the limit is %d kB.",
						   current_info_size + size, workflow_max_payload_size),
				 errhint("Store large data in a table and pass its key, or raise workflow.max_payload_size.")));

	oldcontext = MemoryContextSwitchTo(current_result_context);
	info = PG_GETARG_JSONB_P_COPY(0);
	current_info = lappend(current_info, info);
	current_info_size += size;
	MemoryContextSwitchTo(oldcontext);
	PG_RETURN_VOID();
}
