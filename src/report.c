/*-------------------------------------------------------------------------
 *
 * report.c
 *		workflow.complete_task() and workflow.complete_tasks(): an external
 *		worker reports a task, or a batch of tasks, done.
 *
 * A worker that polls a batch of tasks reports each of them, so this is
 * the hottest function of the external protocol.  The edge itself has one
 * author, workflow._tasks_succeeded (src/sql/30_state_machine.sql), whose
 * body this file executes as a kept statement (src/plans.c):
 *
 *	- the tasks of jobs running under the lease given are moved on by it,
 *	  all those of a complete_tasks() call in one execution, locked in the
 *	  order given: the run recorded, the job queued at its next task (its
 *	  executor woken at commit) or ended;
 *	- anything else (a lease that is no longer current, an idempotent
 *	  repeat, a NULL argument) goes to workflow._complete_task_general,
 *	  which refuses or accepts the call by the rules of the protocol.
 *
 * Then the worker's heartbeat is recorded (workflow._external_heartbeat), once
 * per transaction.
 *
 * Callers.  workflow.complete_task() and complete_tasks() are the C entry
 * points of src/api.c, which call these functions, workflow._complete_task
 * and workflow._complete_tasks, with the exact calling role as their last
 * argument.  A lease alone does not let a role report a task: the task
 * must have been claimed under a runner id of that role (or the caller is
 * a member of workflow_admin).  The general path checks this before it
 * changes anything (workflow._leased_job).  The jobs running under their
 * lease are checked once per runner id and transaction, with the heartbeat that reads the
 * runner's row anyway, right after its statement: a refused call raises
 * an error there, which undoes everything the statement did, and the
 * batch costs no lookup per task.
 *
 * complete_tasks() does the same for a batch, with the jobs running under
 * their lease in one statement: a worker that polled 100 tasks reports
 * them with one statement's executor start-up, index preparation and
 * plan-cache check instead of 100.
 *
 * The statements are prepared once per backend and kept (src/plans.c).
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_complete_task);
PG_FUNCTION_INFO_V1(workflow_complete_tasks);

/*
 * The worker whose heartbeat this transaction recorded, the role whose
 * right to use that worker id was checked with it, and the transaction
 */
static TransactionId seen_xid = InvalidTransactionId;
static Oid	seen_caller = InvalidOid;
static char seen_worker[256];

/* the most tasks one complete_tasks() call takes, as poll_tasks() hands out */
#define MAX_REPORT_BATCH 1000

static bool seen_in_this_transaction(const char *worker, Oid caller);
static void remember_seen(const char *worker, Oid caller);
static void forget_heartbeat_on_abort(SubXactEvent event, SubTransactionId mySubid,
									  SubTransactionId parentSubid, void *arg);
static void complete_running(int n, Datum *ids, Datum *leases, Datum *outputs,
							 bool *outputs_null, const int *positions, bool *done, Oid caller);
static void record_heartbeat(const char *worker, Oid caller);
static bool complete_general(Datum job_id, bool job_null, Datum lease, bool lease_null,
							 Datum output, bool output_null, Oid caller);
static Oid	report_caller(FunctionCallInfo fcinfo);


/*
 * A rolled-back subtransaction may have held the heartbeat this
 * transaction recorded: record it again at the next report.
 */
static void
forget_heartbeat_on_abort(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		seen_xid = InvalidTransactionId;
}

/*
 * Whether this transaction already recorded the heartbeat of `worker' for
 * role `caller' (and so checked that the role may use that id).  The
 * caller wrote a job, so the transaction has an id.
 */
static bool
seen_in_this_transaction(const char *worker, Oid caller)
{
	static bool callback_registered = false;
	TransactionId xid = GetTopTransactionIdIfAny();

	if (!callback_registered)
	{
		RegisterSubXactCallback(forget_heartbeat_on_abort, NULL);
		callback_registered = true;
	}

	return TransactionIdIsValid(xid) && TransactionIdEquals(xid, seen_xid) &&
		caller == seen_caller && strcmp(worker, seen_worker) == 0;
}

/*
 * Remember that this transaction recorded the heartbeat of `worker' for
 * role `caller', once that succeeded.
 */
static void
remember_seen(const char *worker, Oid caller)
{
	TransactionId xid = GetTopTransactionIdIfAny();

	if (!TransactionIdIsValid(xid) || strlen(worker) >= sizeof(seen_worker))
	{
		seen_xid = InvalidTransactionId;
		return;
	}
	seen_xid = xid;
	seen_caller = caller;
	strlcpy(seen_worker, worker, sizeof(seen_worker));
}

/*
 * The calling role, appended by src/api.c to the arguments of the public
 * function (argument `nargs' - 1).
 */
static Oid
report_caller(FunctionCallInfo fcinfo)
{
	if (PG_NARGS() < 1 || PG_ARGISNULL(PG_NARGS() - 1))
		elog(ERROR, "function %u called without its caller", fcinfo->flinfo->fn_oid);
	return PG_GETARG_OID(PG_NARGS() - 1);
}

/*
 * Move on the jobs of the completions given in arrays, by the edge's
 * author, and record the heartbeat of the workers that reported, which
 * refuses (an error: the statement's changes are undone) a task claimed
 * under a runner id that is not the caller's.  positions[k] is the
 * 0-based position in the call of the k-th completion given; done[] is
 * marked at the positions of the jobs moved.
 */
static void
complete_running(int n, Datum *ids, Datum *leases, Datum *outputs, bool *outputs_null,
				 const int *positions, bool *done, Oid caller)
{
	static WorkflowFunctionPlan plan;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', 'n', 'n', ' ', ' '};
	int			dims[1] = {n};
	int			lbs[1] = {1};
	SPITupleTable *tuptable;
	uint64		nrows;

	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(leases, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_md_array(outputs, outputs_null, 1, dims, lbs,
												   JSONBOID, -1, false, TYPALIGN_INT));
	values[3] = values[4] = (Datum) 0;
	values[5] = BoolGetDatum(false);
	/* a report of an external worker: only a job at an external task */
	values[6] = BoolGetDatum(true);
	if (SPI_execute_plan(workflow_keep_function_plan(&plan, WF_TASKS_SUCCEEDED),
						 values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record the success of %d tasks", n);

	tuptable = SPI_tuptable;
	nrows = SPI_processed;
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	row = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		bool		isnull;
		int64		k = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));

		if (k < 1 || k > n)
			elog(ERROR, "workflow._tasks_succeeded returned position " INT64_FORMAT " of %d", k, n);
		done[positions[k - 1]] = true;
		/* runs a statement, but the rows read here stay until SPI_finish */
		record_heartbeat(SPI_getvalue(row, desc, 3), caller);
	}
}

/*
 * Record the heartbeat of an external worker that reported, once per
 * transaction and role: a worker reporting a batch of tasks in one
 * transaction is seen at the first of them.  workflow._external_heartbeat raises
 * an error when `caller' may not use the worker id; a task without a
 * worker is reported by administrators only.
 */
static void
record_heartbeat(const char *worker, Oid caller)
{
	static SPIPlanPtr seen_plan = NULL;
	static SPIPlanPtr check_plan = NULL;
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[1] = ObjectIdGetDatum(caller);
	if (worker == NULL)
	{
		workflow_keep_plan(&check_plan, "SELECT workflow._check_external_worker($1, $2)", 2, argtypes);
		values[0] = (Datum) 0;
		nulls[0] = 'n';
		if (SPI_execute_plan(check_plan, values, nulls, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not check the worker of a task");
		return;
	}
	if (seen_in_this_transaction(worker, caller))
		return;
	workflow_keep_plan(&seen_plan, "SELECT workflow._external_heartbeat($1, $2)", 2, argtypes);
	values[0] = CStringGetTextDatum(worker);
	if (SPI_execute_plan(seen_plan, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not record the heartbeat of worker \"%s\"", worker);
	remember_seen(worker, caller);
}

/*
 * Every case but the usual one, by the rules in SQL: returns whether the
 * call recorded the success (false: an idempotent repeat).
 */
static bool
complete_general(Datum job_id, bool job_null, Datum lease, bool lease_null,
				 Datum output, bool output_null, Oid caller)
{
	static SPIPlanPtr general_plan = NULL;
	Oid			argtypes[4] = {INT8OID, INT8OID, JSONBOID, OIDOID};
	Datum		values[4] = {job_id, lease, output, ObjectIdGetDatum(caller)};
	char		nulls[4] = {job_null ? 'n' : ' ', lease_null ? 'n' : ' ', output_null ? 'n' : ' ', ' '};
	bool		isnull;
	bool		recorded;

	workflow_keep_plan(&general_plan, "SELECT * FROM workflow._complete_task_general($1, $2, $3, $4)",
			  4, argtypes);
	if (SPI_execute_plan(general_plan, values, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not record the success of job %lld", job_null ? 0 : (long long) DatumGetInt64(job_id));
	recorded = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
	if (recorded)
		record_heartbeat(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2), caller);
	return recorded;
}

/*
 * workflow._complete_task(job_id bigint, lease bigint, output jsonb,
 * p_caller oid) returns boolean, the implementation of
 * workflow.complete_task: true when this call recorded the success, false
 * for an idempotent repeat (see workflow._complete_task_general).
 */
Datum
workflow_complete_task(PG_FUNCTION_ARGS)
{
	bool		result = true;
	bool		done = false;
	Oid			caller = report_caller(fcinfo);

	if (!PG_ARGISNULL(2))
		workflow_check_payload_size(PG_GETARG_DATUM(2), "output");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "complete_task could not connect to SPI");

	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
	{
		Datum		id = PG_GETARG_DATUM(0);
		Datum		lease = PG_GETARG_DATUM(1);
		Datum		output = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
		bool		output_null = PG_ARGISNULL(2);
		int			position = 0;

		complete_running(1, &id, &lease, &output, &output_null, &position, &done, caller);
	}
	if (!done)
		result = complete_general(PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0), PG_ARGISNULL(0),
								  PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1), PG_ARGISNULL(1),
								  PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2), PG_ARGISNULL(2),
								  caller);

	SPI_finish();
	PG_RETURN_BOOL(result);
}

/*
 * workflow._complete_tasks(job_ids bigint[], leases bigint[], outputs
 * jsonb[], p_caller oid) returns table (job_id bigint, recorded boolean),
 * the implementation of workflow.complete_tasks: complete_task for each
 * task of a batch, in the order given, with the jobs running under their
 * lease in one statement.  outputs may be NULL (no output for any task).  As with
 * a series of complete_task calls, an error (a stale lease, say) fails the
 * whole call.
 */
Datum
workflow_complete_tasks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *ids_array;
	ArrayType  *leases_array;
	Datum	   *ids, *leases, *outputs = NULL;
	bool	   *ids_null, *leases_null, *outputs_null = NULL;
	int			n, nleases, noutputs;
	bool	   *done;
	int			nrun = 0;
	Datum	   *run_ids, *run_leases, *run_outputs;
	bool	   *run_outputs_null;
	int		   *positions;
	Oid			caller = report_caller(fcinfo);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_ids and leases must not be null")));
	ids_array = PG_GETARG_ARRAYTYPE_P(0);
	leases_array = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(ids_array) > 1 || ARR_NDIM(leases_array) > 1 ||
		(!PG_ARGISNULL(2) && ARR_NDIM(PG_GETARG_ARRAYTYPE_P(2)) > 1))
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("job_ids, leases and outputs must be one-dimensional arrays")));
	deconstruct_array(ids_array, INT8OID, 8, true, TYPALIGN_DOUBLE, &ids, &ids_null, &n);
	deconstruct_array(leases_array, INT8OID, 8, true, TYPALIGN_DOUBLE, &leases, &leases_null,
					  &nleases);
	noutputs = n;
	if (!PG_ARGISNULL(2))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), JSONBOID, -1, false, TYPALIGN_INT,
						  &outputs, &outputs_null, &noutputs);
	if (nleases != n || noutputs != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("job_ids, leases and outputs must have the same length"),
				 errdetail("There are %d job ids, %d leases and %d outputs.", n, nleases, noutputs)));
	if (n > MAX_REPORT_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("at most %d tasks can be completed in one call, not %d",
						MAX_REPORT_BATCH, n)));
	for (int i = 0; i < n; i++)
		if (outputs != NULL && !outputs_null[i])
			workflow_check_payload_size(outputs[i], "output");

	InitMaterializedSRF(fcinfo, 0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "complete_tasks could not connect to SPI");

	/*
	 * The jobs running under their lease in one statement; a job given
	 * twice only the first time (the second is a repeat, for the general
	 * path).
	 */
	done = palloc0(sizeof(bool) * Max(n, 1));
	run_ids = palloc(sizeof(Datum) * Max(n, 1));
	run_leases = palloc(sizeof(Datum) * Max(n, 1));
	run_outputs = palloc(sizeof(Datum) * Max(n, 1));
	run_outputs_null = palloc(sizeof(bool) * Max(n, 1));
	positions = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		twice = false;

		if (ids_null[i] || leases_null[i])
			continue;
		for (int k = 0; k < i && !twice; k++)
			twice = !ids_null[k] && DatumGetInt64(ids[k]) == DatumGetInt64(ids[i]);
		if (twice)
			continue;
		run_ids[nrun] = ids[i];
		run_leases[nrun] = leases[i];
		run_outputs[nrun] = outputs != NULL ? outputs[i] : (Datum) 0;
		run_outputs_null[nrun] = outputs == NULL || outputs_null[i];
		positions[nrun] = i;
		nrun++;
	}
	if (nrun > 0)
		complete_running(nrun, run_ids, run_leases, run_outputs, run_outputs_null, positions,
						 done, caller);

	/* the rest, one by one in the order given, and the result */
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {ids_null[i], false};

		if (!done[i])
			values[1] = BoolGetDatum(complete_general(ids[i], ids_null[i], leases[i], leases_null[i],
													  outputs != NULL ? outputs[i] : (Datum) 0,
													  outputs == NULL || outputs_null[i],
													  caller));
		else
			values[1] = BoolGetDatum(true);
		values[0] = ids[i];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	return (Datum) 0;
}
