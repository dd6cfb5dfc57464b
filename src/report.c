/*-------------------------------------------------------------------------
 *
 * report.c
 *		workflow.complete_task() and workflow.complete_tasks(): an external
 *		worker reports a task, or a batch of tasks, done.
 *
 * A worker that polls a batch of tasks reports each of them, so this is
 * the hottest function of the external protocol.  The general rules live
 * in SQL (workflow._complete_task_general: stale leases, idempotent repeats,
 * targets, fallbacks, the onerror and oncancel chains); this file handles
 * the common case without PL/pgSQL and hands every other case to it:
 *
 *	- the job is running under the given lease, in the main chain, not in a
 *	  fallback and without a target: it is locked (FOR NO KEY UPDATE, the
 *	  same lock as the SQL path takes), then one statement records the
 *	  task's run and either ends the job as succeeded (the last task) or
 *	  queues it at its next task, exactly as workflow._step_succeeded()
 *	  does; the runners or the workers of the next task's type are woken at
 *	  commit;
 *	- anything else, including a lease that is no longer current, goes to
 *	  workflow._complete_task_general(), which takes the same lock again
 *	  (a no-op for the lock holder) and decides.
 *
 * Then the worker's heartbeat is recorded (workflow._runner_seen), once
 * per transaction.
 *
 * Callers.  workflow.complete_task() and complete_tasks() are the C entry
 * points of src/api.c, which call these functions, workflow._complete_task
 * and workflow._complete_tasks, with the exact calling role as their last
 * argument.  A lease alone does not let a role report a task: the task
 * must have been claimed under a runner id of that role (or the caller is
 * a member of workflow_admin).  The general path checks this before it
 * changes anything (workflow._leased_job).  The usual case checks it once
 * per runner id and transaction, with the heartbeat that reads the
 * runner's row anyway, right after its statement: a refused call raises
 * an error there, which undoes everything the statement did, and the
 * batch costs no lookup per task.
 *
 * complete_tasks() does the same for a batch, with the usual cases of the
 * whole batch in one statement: a worker that polled 100 tasks reports
 * them with one statement's executor start-up, index preparation and
 * plan-cache check instead of 100.
 *
 * The statements are prepared once per backend and kept; PostgreSQL's plan
 * cache re-plans them when the tables or functions they use change (a
 * DROP and CREATE EXTENSION included), since their text names them.
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
static uint64 after_fast(bool *done, Oid caller);
static void record_heartbeat(const char *worker, Oid caller);
static bool complete_general(Datum job_id, bool job_null, Datum lease, bool lease_null,
							 Datum output, bool output_null, Oid caller);
static uint64 fast_one(Datum job_id, Datum lease, Datum output, bool output_null, Oid caller);
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
 * The usual case of a completion in one statement, after a CTE `o' of the
 * jobs to complete (id, workflow_id, step, attempt, task_attempt,
 * runner_id, claimed_at, lease, output, n), locked: record the run of each
 * job's task (_record_run); end the job as succeeded (_terminate) or queue
 * it at its next task (_enqueue_step).  Returns, per job in the order of
 * n: n, whether it was queued, the next task's type and the worker.
 */
#define COMPLETE_SQL_TAIL \
	"c AS (" \
	"  SELECT o.*, cs.name, ns.position AS next_position, ns.task_type AS next_type " \
	"    FROM o " \
	"    JOIN workflow.steps cs ON cs.workflow_id = o.workflow_id " \
	"         AND cs.phase = 'chain' AND cs.position = o.step " \
	"    LEFT JOIN workflow.steps ns ON ns.workflow_id = o.workflow_id " \
	"         AND ns.phase = 'chain' AND ns.position = o.step + 1), " \
	"run AS (" \
	"  INSERT INTO workflow.task_runs " \
	"      (job_id, job_attempt, phase, step, task, attempt, fallback, status, " \
	"       runner_id, lease, started_at, output) " \
	"  SELECT c.id, c.attempt, 'chain', c.step, c.name, c.task_attempt, false, " \
	"         'succeeded', c.runner_id, c.lease, coalesce(c.claimed_at, pg_catalog.now()), c.output " \
	"    FROM c ORDER BY c.n), " \
	"upd AS (" \
	"  UPDATE workflow.jobs j " \
	"     SET execution = CASE WHEN c.next_position IS NULL THEN 'succeeded' " \
	"                          ELSE 'queued' END::workflow.execution, " \
	"         result = CASE WHEN c.next_position IS NULL THEN c.output ELSE j.result END, " \
	"         error = CASE WHEN c.next_position IS NULL THEN NULL ELSE j.error END, " \
	"         finished_at = CASE WHEN c.next_position IS NULL " \
	"                            THEN pg_catalog.clock_timestamp() " \
	"                            ELSE j.finished_at END, " \
	"         step = coalesce(c.next_position, j.step), " \
	"         task_attempt = CASE WHEN c.next_position IS NULL THEN j.task_attempt " \
	"                             ELSE 1 END, " \
	"         run_at = CASE WHEN c.next_position IS NULL THEN j.run_at " \
	"                       ELSE pg_catalog.now() END, " \
	"         runner_id = CASE WHEN c.next_position IS NULL THEN j.runner_id END, " \
	"         claimed_at = CASE WHEN c.next_position IS NULL THEN j.claimed_at END, " \
	"         task_type = c.next_type, " \
	"         lease = NULL, lease_expires_at = NULL, in_fallback = false " \
	"    FROM c " \
	"   WHERE j.id = c.id) " \
	"SELECT c.n, c.next_position IS NOT NULL, c.next_type, c.runner_id FROM c ORDER BY c.n"

/* the jobs of the usual case: running under the lease, main chain, no target */
#define COMPLETE_SQL_SIMPLE_JOB \
	"(j.execution = 'running') IS TRUE " \
	"AND j.phase = 'chain' AND NOT j.in_fallback AND j.target IS NULL "

/*
 * After the fast statement: wake whoever runs the next task of each job
 * it queued, and record the heartbeat of the workers that reported, which
 * refuses (an error: the statement's changes are undone) a task claimed
 * under a runner id that is not the caller's.  Returns the number of rows
 * of the statement's result (SPI_tuptable), whose first column is each
 * job's position in the call, marked in done[] (1-based) when given.
 */
static uint64
after_fast(bool *done, Oid caller)
{
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		nrows = SPI_processed;
	bool		isnull;

	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	row = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;

		if (done != NULL)
			done[DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)) - 1] = true;
		if (DatumGetBool(SPI_getbinval(row, desc, 2, &isnull)))
		{
			/* queued at its next task: wake whoever runs it */
			workflow_require_shmem();
			workflow_wake_queue_at_commit(workflow_queue_hash(SPI_getvalue(row, desc, 3)), 1);
		}
		/* runs a statement, but the rows read here stay until SPI_finish */
		record_heartbeat(SPI_getvalue(row, desc, 4), caller);
	}
	return nrows;
}

/*
 * Record the heartbeat of an external worker that reported, once per
 * transaction and role: a worker reporting a batch of tasks in one
 * transaction is seen at the first of them.  workflow._runner_seen raises
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
	workflow_keep_plan(&seen_plan, "SELECT workflow._runner_seen($1, $2)", 2, argtypes);
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
	Oid			caller = report_caller(fcinfo);

	if (!PG_ARGISNULL(2))
		workflow_check_payload_size(PG_GETARG_DATUM(2), "output");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "complete_task could not connect to SPI");

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) ||
		fast_one(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1),
				 PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2), PG_ARGISNULL(2), caller) == 0)
		result = complete_general(PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0), PG_ARGISNULL(0),
								  PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1), PG_ARGISNULL(1),
								  PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2), PG_ARGISNULL(2),
								  caller);

	SPI_finish();
	PG_RETURN_BOOL(result);
}

/*
 * The usual case of one completion; returns 1 when it applied, else 0.
 */
static uint64
fast_one(Datum job_id, Datum lease, Datum output, bool output_null, Oid caller)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT8OID, INT8OID, JSONBOID};
	Datum		values[3] = {job_id, lease, output};
	char		nulls[3] = {' ', ' ', output_null ? 'n' : ' '};

	workflow_keep_plan(&plan,
			  "WITH o AS ("
			  "  SELECT j.id, j.workflow_id, j.step, j.attempt, j.task_attempt, "
			  "         j.runner_id, j.claimed_at, j.lease, $3::jsonb AS output, 1::bigint AS n "
			  "    FROM workflow.jobs j "
			  "   WHERE j.id = $1 AND j.lease = $2 AND " COMPLETE_SQL_SIMPLE_JOB
			  "     FOR NO KEY UPDATE), "
			  COMPLETE_SQL_TAIL,
			  3, argtypes);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record the success of job %lld", (long long) DatumGetInt64(job_id));
	return after_fast(NULL, caller);
}

/*
 * workflow._complete_tasks(job_ids bigint[], leases bigint[], outputs
 * jsonb[], p_caller oid) returns table (job_id bigint, recorded boolean),
 * the implementation of workflow.complete_tasks: complete_task for each
 * task of a batch, in the order given, with the usual cases in one
 * statement.  outputs may be NULL (no output for any task).  As with
 * a series of complete_task calls, an error (a stale lease, say) fails the
 * whole call.
 */
Datum
workflow_complete_tasks(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr fast_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *ids_array;
	ArrayType  *leases_array;
	Datum	   *ids, *leases, *outputs = NULL;
	bool	   *ids_null, *leases_null, *outputs_null = NULL;
	int			n, nleases, noutputs;
	bool	   *simple;
	bool	   *done;
	int			nsimple = 0;
	Datum	   *fast_ids, *fast_leases, *fast_outputs, *fast_n;
	bool	   *fast_outputs_null;
	int			dims[1];
	int			lbs[1] = {1};
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
	 * The usual cases in one statement; a job given twice only the first
	 * time (the second is a repeat, for the general path).
	 */
	simple = palloc0(sizeof(bool) * Max(n, 1));
	done = palloc0(sizeof(bool) * Max(n, 1));
	fast_ids = palloc(sizeof(Datum) * Max(n, 1));
	fast_leases = palloc(sizeof(Datum) * Max(n, 1));
	fast_outputs = palloc(sizeof(Datum) * Max(n, 1));
	fast_outputs_null = palloc(sizeof(bool) * Max(n, 1));
	fast_n = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		twice = false;

		if (ids_null[i] || leases_null[i])
			continue;
		for (int k = 0; k < i && !twice; k++)
			twice = !ids_null[k] && DatumGetInt64(ids[k]) == DatumGetInt64(ids[i]);
		if (twice)
			continue;
		simple[i] = true;
		fast_ids[nsimple] = ids[i];
		fast_leases[nsimple] = leases[i];
		fast_outputs[nsimple] = outputs != NULL ? outputs[i] : (Datum) 0;
		fast_outputs_null[nsimple] = outputs == NULL || outputs_null[i];
		fast_n[nsimple] = Int64GetDatum(i + 1);
		nsimple++;
	}
	if (nsimple > 0)
	{
		Oid			argtypes[4] = {INT8ARRAYOID, INT8ARRAYOID, JSONBARRAYOID, INT8ARRAYOID};
		Datum		values[4];

		dims[0] = nsimple;
		values[0] = PointerGetDatum(construct_array(fast_ids, nsimple, INT8OID, 8, true,
													TYPALIGN_DOUBLE));
		values[1] = PointerGetDatum(construct_array(fast_leases, nsimple, INT8OID, 8, true,
													TYPALIGN_DOUBLE));
		values[2] = PointerGetDatum(construct_md_array(fast_outputs, fast_outputs_null, 1, dims,
													   lbs, JSONBOID, -1, false, TYPALIGN_INT));
		values[3] = PointerGetDatum(construct_array(fast_n, nsimple, INT8OID, 8, true,
													TYPALIGN_DOUBLE));
		/* locks in the order given, as a series of complete_task calls */
		workflow_keep_plan(&fast_plan,
				  "WITH o AS ("
				  "  SELECT j.id, j.workflow_id, j.step, j.attempt, j.task_attempt, "
				  "         j.runner_id, j.claimed_at, j.lease, v.output, v.n "
				  "    FROM unnest($1, $2, $3, $4) AS v(id, lease, output, n) "
				  "    JOIN workflow.jobs j ON j.id = v.id AND j.lease = v.lease "
				  "   WHERE " COMPLETE_SQL_SIMPLE_JOB
				  "   ORDER BY v.n "
				  "     FOR NO KEY UPDATE OF j), "
				  COMPLETE_SQL_TAIL,
				  4, argtypes);
		if (SPI_execute_plan(fast_plan, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "complete_tasks could not record the successes");
		after_fast(done, caller);
	}

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
