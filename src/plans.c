/*-------------------------------------------------------------------------
 *
 * plans.c
 *		Statements of the extension's own C code, prepared once per backend
 *		and kept for its life (SPI_keepplan).
 *
 * The runners, the sweeper and the C entry points (complete_task, ...) run
 * the same few statements over and over: each keeps its plan in a static
 * slot, prepared the first time it is needed.  A kept plan is revalidated
 * by the plan cache when the objects it uses change (a new extension after
 * DROP and CREATE EXTENSION, say), so it never has to be dropped by hand.
 * The statements name everything with its schema: they run with the
 * caller's search_path.
 *
 * A transition of the job state machine is written once, in SQL, as a
 * set-based function of the extension (workflow._tasks_succeeded, say);
 * its SQL callers call it, and C executes its body as a statement of its
 * own (workflow_keep_function_plan).  The call would cost a planning of
 * the body at every execution before PostgreSQL 18 (a SQL function keeps
 * its plan for one query only), and the body's plan, kept here, is what
 * the call would run.  A change of pg_proc (an update of the extension)
 * makes the next use prepare the body again.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "workflow.h"

/*
 * Prepare `sql' into *slot unless it is there already, and keep the plan
 * for the life of the backend.  Must be called while connected to SPI.
 * Returns the plan.
 */
SPIPlanPtr
workflow_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare a statement of the workflow extension: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the plan of a statement of the workflow extension");
		*slot = plan;
	}
	return *slot;
}

/* bumped at every change of pg_proc: kept function bodies are stale */
static uint64 proc_generation = 1;

/*
 * Syscache callback: some function changed, so a kept body may be stale.
 */
static void
forget_function_plans(Datum arg, int cacheid, uint32 hashvalue)
{
	proc_generation++;
}

/*
 * Prepare the body of the SQL-language function `signature' (such as
 * "workflow._tasks_succeeded(bigint[], ...)"; its body refers to its
 * arguments by position) into *slot as a statement taking the function's
 * arguments, and keep it until a function of the database changes.  Must
 * be called while connected to SPI.  Returns the plan.
 */
SPIPlanPtr
workflow_keep_function_plan(WorkflowFunctionPlan *slot, const char *signature)
{
	static bool callback_registered = false;
	Oid			fn;
	HeapTuple	tuple;
	Form_pg_proc proc;
	Datum		source;
	bool		isnull;
	SPIPlanPtr	plan;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, forget_function_plans, (Datum) 0);
		callback_registered = true;
	}
	if (slot->plan != NULL && slot->generation == proc_generation)
		return slot->plan;
	if (slot->plan != NULL)
	{
		SPI_freeplan(slot->plan);
		slot->plan = NULL;
	}

	fn = DatumGetObjectId(DirectFunctionCall1(regprocedurein, CStringGetDatum(signature)));
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	source = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);
	if (proc->prolang != SQLlanguageId || isnull)
		elog(ERROR, "function %s is not a SQL function with a body in prosrc", signature);
	/*
	 * A generic plan: the body's arrays of jobs give custom plans nothing
	 * better, and planning a statement of several CTEs at every execution
	 * would cost more than executing it.
	 */
	plan = SPI_prepare_cursor(TextDatumGetCString(source), proc->pronargs,
							  proc->proargtypes.values, CURSOR_OPT_GENERIC_PLAN);
	ReleaseSysCache(tuple);
	if (plan == NULL)
		elog(ERROR, "could not prepare the body of function %s: %s", signature,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of the body of function %s", signature);
	slot->plan = plan;
	slot->generation = proc_generation;
	return plan;
}
