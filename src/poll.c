/*-------------------------------------------------------------------------
 *
 * poll.c
 *		workflow.poll_tasks(): external workers claim tasks of a type, in a
 *		batch, with an optional long poll woken at commit.
 *
 * The claim itself is SQL (workflow._claim_tasks: SKIP LOCKED, the
 * worker's domain first, lock by target).  When nothing is available and
 * the caller asked to wait, the backend registers as a waiter of the task
 * type's queue (src/wakeup.c), resets its latch, tries once more, and
 * sleeps on its latch until a transaction that makes a task of that type
 * runnable commits, or the wait ends.  There is no polling loop: the
 * backend wakes only for a commit (or a signal), then claims again.
 *
 * Snapshots.  A long poll must not hold back the xmin horizon while it
 * sleeps.  A function cannot drop the snapshot its calling statement
 * holds; but when that statement reads nothing else with it — it is
 * `SELECT <columns> FROM workflow.poll_tasks(...)' and nothing more, in a
 * single-statement READ COMMITTED transaction — the old snapshot is never
 * used again once this function returns (the function materialises its
 * result).  Only then the backend's advertised xmin is cleared for the
 * sleep, as SnapshotResetXmin() does when no snapshot is left; the next
 * snapshot taken after the wake-up advertises a new one.  In any other
 * form of call the wait still works but keeps the statement's snapshot.
 * The claim writes nothing until it finds a task, so no transaction id is
 * held while waiting either.
 *
 * Callers.  workflow.poll_tasks() is the C entry point of src/api.c, which
 * calls this function, workflow._poll_tasks(..., p_caller oid), with the
 * exact calling role: the worker id must be that role's (or new, and then
 * registered as that role's), checked before any wait and again when the
 * worker is registered after the claim.
 *
 * Arithmetic.  Times and intervals given by the caller are converted with
 * saturation, never with a signed overflow: an absurd wait is refused as
 * out of range, not wrapped around into an accepted one.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_poll_tasks);

/* the longest long poll */
#define MAX_WAIT_MS (5 * 60 * 1000)
/* the largest batch */
#define MAX_BATCH 1000

static int64 interval_to_ms(Interval *iv);
static int64 ms_until(TimestampTz when);
static bool statement_reads_only_this_function(Oid fn_oid);
static bool is_public_entry_point(Oid funcid, Oid impl_oid);
static int	claim(SPIPlanPtr plan, Datum *values, char *nulls, ReturnSetInfo *rsinfo);

/*
 * workflow._poll_tasks(task_type text, worker_id text, count int,
 *						wait interval, domain text, p_caller oid)
 * returns setof workflow.task: the implementation of workflow.poll_tasks
 * (src/api.c passes the calling role).
 */
Datum
workflow_poll_tasks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *task_type;
	text	   *worker_id;
	int32		count;
	int64		wait_ms;
	uint32		queue;
	TimestampTz deadline;
	bool		may_release_xmin;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Oid			caller_argtypes[2] = {TEXTOID, OIDOID};
	Datum		caller_values[2];
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	int			found;

	if (PG_NARGS() != 6 || PG_ARGISNULL(5))
		elog(ERROR, "workflow._poll_tasks called without its caller");
	caller_values[1] = PG_GETARG_DATUM(5);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task_type, worker_id, count and wait must not be null")));
	task_type = PG_GETARG_TEXT_PP(0);
	worker_id = PG_GETARG_TEXT_PP(1);
	count = PG_GETARG_INT32(2);
	wait_ms = interval_to_ms(PG_GETARG_INTERVAL_P(3));

	if (count < 1 || count > MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("count must be between 1 and %d, not %d", MAX_BATCH, count)));
	if (wait_ms < 0 || wait_ms > MAX_WAIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must be between 0 and 5 minutes"),
				 errhint("Poll again after a wait ends; an idle worker costs nothing while it waits.")));

	workflow_require_shmem();
	InitMaterializedSRF(fcinfo, 0);

	queue = workflow_queue_hash(text_to_cstring(task_type));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	may_release_xmin = wait_ms > 0 && statement_reads_only_this_function(fcinfo->flinfo->fn_oid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "poll_tasks could not connect to SPI");

	/* the same checks as the other functions, in SQL: the id is the caller's */
	caller_values[0] = PointerGetDatum(worker_id);
	if (SPI_execute_with_args("SELECT workflow._check_runner_id($1), "
							  "workflow._check_external_worker($1, $2)", 2, caller_argtypes,
							  caller_values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the worker id");
	values[0] = PointerGetDatum(task_type);
	if (PG_ARGISNULL(4))
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	else
		values[1] = PG_GETARG_DATUM(4);
	if (SPI_execute_with_args("SELECT workflow._check_name($1, 'task type', false), "
							  "workflow._check_name($2, 'domain', true)",
							  2, argtypes + 0, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the task type");

	plan = SPI_prepare("SELECT * FROM workflow._claim_tasks($1, $2, $3, $4)", 4, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the claim of tasks: %s",
			 SPI_result_code_string(SPI_result));

	values[0] = PointerGetDatum(task_type);
	values[1] = PointerGetDatum(worker_id);
	values[2] = Int32GetDatum(count);
	nulls[1] = ' ';
	if (PG_ARGISNULL(4))
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	else
		values[3] = PG_GETARG_DATUM(4);

	for (;;)
	{
		long		remaining;

		if (wait_ms > 0)
		{
			/* announce, then look, then sleep: no wake-up is lost */
			workflow_wait_begin(queue);
			ResetLatch(MyLatch);
		}

		found = claim(plan, values, nulls, rsinfo);
		if (found > 0 || wait_ms == 0)
			break;
		remaining = (long) ms_until(deadline);
		if (remaining <= 0)
			break;

		/*
		 * No commit wakes us when a retry's backoff or a requeue's delay
		 * ends: sleep no longer than until the next task becomes due.
		 */
		{
			Datum		dvalues[2];
			char		dnulls[2] = {' ', nulls[3]};
			bool		isnull;

			dvalues[0] = values[0];
			dvalues[1] = values[3];
			if (SPI_execute_with_args("SELECT workflow._next_due($1, $2)", 2, argtypes + 0,
									  dvalues, dnulls, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not look for delayed tasks");
			if (SPI_processed == 1)
			{
				Datum		due = SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull);

				if (!isnull)
				{
					/* saturating: run_at may be far away, even infinite */
					int64		until_due = ms_until(DatumGetTimestampTz(due));

					if (until_due < remaining)
						remaining = (long) Max(1, until_due + 1);
				}
			}
		}

		if (may_release_xmin)
		{
			InvalidateCatalogSnapshot();
			MyProc->xmin = InvalidTransactionId;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, PG_WAIT_EXTENSION);
		workflow_wait_end();
		CHECK_FOR_INTERRUPTS();
	}
	workflow_wait_end();

	/* register or heartbeat the worker, as the caller's */
	if (SPI_execute_with_args("SELECT workflow._touch_worker($1, $2)", 2, caller_argtypes,
							  caller_values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not register the worker");

	SPI_finish();
	return (Datum) 0;
}

/*
 * Run the claim once and append what it got to the result.
 */
static int
claim(SPIPlanPtr plan, Datum *values, char *nulls, ReturnSetInfo *rsinfo)
{
	uint64		i;

	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim tasks");
	for (i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	return (int) SPI_processed;
}

/*
 * An interval in milliseconds (months count 30 days), saturating at
 * PG_INT64_MIN / PG_INT64_MAX instead of overflowing: the caller refuses
 * anything out of its range, and an interval of 296516 years must not wrap
 * around into an accepted wait.
 */
static int64
interval_to_ms(Interval *iv)
{
	int64		ms = iv->time / 1000;
	int64		part;

	/* days and months in milliseconds cannot overflow on their own */
	part = (int64) iv->day * (USECS_PER_DAY / 1000);
	if (pg_add_s64_overflow(ms, part, &ms))
		return part < 0 ? PG_INT64_MIN : PG_INT64_MAX;
	part = (int64) iv->month * DAYS_PER_MONTH * (USECS_PER_DAY / 1000);
	if (pg_add_s64_overflow(ms, part, &ms))
		return part < 0 ? PG_INT64_MIN : PG_INT64_MAX;
	return ms;
}

/*
 * Milliseconds from now until `when' (negative when it is past), saturating
 * for the infinite timestamps and for differences out of range.
 */
static int64
ms_until(TimestampTz when)
{
	int64		diff;

	if (TIMESTAMP_IS_NOEND(when))
		return PG_INT64_MAX;
	if (TIMESTAMP_IS_NOBEGIN(when))
		return PG_INT64_MIN;
	if (pg_sub_s64_overflow(when, GetCurrentTimestamp(), &diff))
		return when > 0 ? PG_INT64_MAX : PG_INT64_MIN;
	return diff / 1000;
}

/*
 * Is `funcid' the public entry point whose implementation `impl_oid' is
 * (workflow.poll_tasks for workflow._poll_tasks, see src/api.c)?
 */
static bool
is_public_entry_point(Oid funcid, Oid impl_oid)
{
	char	   *name = get_func_name(funcid);
	char	   *impl_name = get_func_name(impl_oid);

	return name != NULL && impl_name != NULL && impl_name[0] == '_' &&
		strcmp(name, impl_name + 1) == 0 &&
		get_func_namespace(funcid) == get_func_namespace(impl_oid);
}

/*
 * Is the running statement exactly `SELECT <plain columns> FROM
 * workflow.poll_tasks(...)' (whose implementation `fn_oid' is) in a
 * single-statement READ COMMITTED transaction?
 * Then nothing reads with its snapshot after this function returns, and
 * the advertised xmin may be cleared while it sleeps (see the file header).
 */
static bool
statement_reads_only_this_function(Oid fn_oid)
{
	PlannedStmt *stmt;
	Plan	   *top;
	RangeTblEntry *rte;
	RangeTblFunction *rtfunc;
	ListCell   *lc;

	if (IsTransactionBlock() || XactIsoLevel != XACT_READ_COMMITTED)
		return false;
	if (ActivePortal == NULL || list_length(ActivePortal->stmts) != 1)
		return false;
	stmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (stmt->commandType != CMD_SELECT || stmt->subplans != NIL ||
		list_length(stmt->rtable) != 1)
		return false;
	top = stmt->planTree;
	if (top == NULL || !IsA(top, FunctionScan) || top->qual != NIL ||
		top->initPlan != NIL || top->lefttree != NULL)
		return false;
	foreach(lc, top->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!IsA(tle->expr, Var))
			return false;
	}
	rte = linitial_node(RangeTblEntry, stmt->rtable);
	if (rte->rtekind != RTE_FUNCTION)
		return false;
	/* the flat range table drops the function list: the plan node has it */
	if (list_length(((FunctionScan *) top)->functions) != 1)
		return false;
	rtfunc = linitial_node(RangeTblFunction, ((FunctionScan *) top)->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr) ||
		!is_public_entry_point(((FuncExpr *) rtfunc->funcexpr)->funcid, fn_oid))
		return false;
	return true;
}
