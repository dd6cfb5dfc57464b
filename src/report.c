/*-------------------------------------------------------------------------
 *
 * report.c
 *		workflow.complete_task(): an external worker reports a task done.
 *
 * A worker that polls a batch of tasks reports each of them, so this is
 * the hottest function of the external protocol.  The general rules live
 * in SQL (workflow._complete_task: stale leases, idempotent repeats,
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
 *	  workflow._complete_task(), which takes the same lock again (a no-op
 *	  for the lock holder) and decides.
 *
 * Then the worker's heartbeat is recorded (workflow._runner_seen), as by
 * every call of the protocol.
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
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_complete_task);

/* the worker whose heartbeat this transaction recorded, and the transaction */
static TransactionId seen_xid = InvalidTransactionId;
static char seen_worker[256];

static SPIPlanPtr keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes);
static bool seen_in_this_transaction(const char *worker);

/*
 * Prepare a statement of this file once per backend.
 */
static SPIPlanPtr
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("complete_task could not prepare a statement: %s",
							SPI_result_code_string(SPI_result))));
		*slot = plan;
	}
	return *slot;
}

/*
 * Whether this transaction already recorded the heartbeat of `worker';
 * remembers it as recorded otherwise.  The caller wrote a job, so the
 * transaction has an id.
 */
static bool
seen_in_this_transaction(const char *worker)
{
	TransactionId xid = GetTopTransactionIdIfAny();

	if (!TransactionIdIsValid(xid) || strlen(worker) >= sizeof(seen_worker))
		return false;
	if (TransactionIdEquals(xid, seen_xid) && strcmp(worker, seen_worker) == 0)
		return true;
	seen_xid = xid;
	strlcpy(seen_worker, worker, sizeof(seen_worker));
	return false;
}

/*
 * workflow.complete_task(job_id bigint, lease bigint, output jsonb)
 * returns boolean: true when this call recorded the success, false for an
 * idempotent repeat (see workflow._complete_task).
 */
Datum
workflow_complete_task(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr fast_plan = NULL;
	static SPIPlanPtr general_plan = NULL;
	static SPIPlanPtr seen_plan = NULL;
	Datum		values[3];
	char		nulls[3];
	bool		isnull;
	bool		done = false;
	bool		result = true;
	char	   *worker = NULL;
	Oid			argtypes[3] = {INT8OID, INT8OID, JSONBOID};

	if (!PG_ARGISNULL(2))
		workflow_check_payload_size(PG_GETARG_DATUM(2), "output");

	if (SPI_connect() != SPI_OK_CONNECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("complete_task could not connect to SPI")));

	for (int i = 0; i < 3; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
	{
		/*
		 * The usual case in one statement: lock the job if its lease is
		 * current (see _runner_record for the form of the execution test)
		 * and it is simple; record the run of its task (_record_run); end
		 * it as succeeded (_terminate) or queue it at its next task
		 * (_enqueue_step).
		 */
		keep_plan(&fast_plan,
				  "WITH o AS ("
				  "  SELECT j.id, j.workflow_id, j.step, j.attempt, j.task_attempt, "
				  "         j.runner_id, j.claimed_at, j.lease "
				  "    FROM workflow.jobs j "
				  "   WHERE j.id = $1 AND j.lease = $2 AND (j.execution = 'running') IS TRUE "
				  "     AND j.phase = 'chain' AND NOT j.in_fallback AND j.target IS NULL "
				  "     FOR NO KEY UPDATE), "
				  "c AS ("
				  "  SELECT o.*, cs.name, ns.position AS next_position, ns.task_type AS next_type "
				  "    FROM o "
				  "    JOIN workflow.steps cs ON cs.workflow_id = o.workflow_id "
				  "         AND cs.phase = 'chain' AND cs.position = o.step "
				  "    LEFT JOIN workflow.steps ns ON ns.workflow_id = o.workflow_id "
				  "         AND ns.phase = 'chain' AND ns.position = o.step + 1), "
				  "run AS ("
				  "  INSERT INTO workflow.task_runs "
				  "      (job_id, job_attempt, phase, step, task, attempt, fallback, status, "
				  "       runner_id, lease, started_at, output) "
				  "  SELECT c.id, c.attempt, 'chain', c.step, c.name, c.task_attempt, false, "
				  "         'succeeded', c.runner_id, c.lease, coalesce(c.claimed_at, pg_catalog.now()), $3 "
				  "    FROM c), "
				  "upd AS ("
				  "  UPDATE workflow.jobs j "
				  "     SET execution = CASE WHEN c.next_position IS NULL THEN 'succeeded' "
				  "                          ELSE 'queued' END::workflow.execution, "
				  "         result = CASE WHEN c.next_position IS NULL THEN $3 ELSE j.result END, "
				  "         error = CASE WHEN c.next_position IS NULL THEN NULL ELSE j.error END, "
				  "         finished_at = CASE WHEN c.next_position IS NULL "
				  "                            THEN pg_catalog.clock_timestamp() "
				  "                            ELSE j.finished_at END, "
				  "         step = coalesce(c.next_position, j.step), "
				  "         task_attempt = CASE WHEN c.next_position IS NULL THEN j.task_attempt "
				  "                             ELSE 1 END, "
				  "         run_at = CASE WHEN c.next_position IS NULL THEN j.run_at "
				  "                       ELSE pg_catalog.now() END, "
				  "         runner_id = CASE WHEN c.next_position IS NULL THEN j.runner_id END, "
				  "         claimed_at = CASE WHEN c.next_position IS NULL THEN j.claimed_at END, "
				  "         task_type = c.next_type, "
				  "         lease = NULL, lease_expires_at = NULL, in_fallback = false "
				  "    FROM c "
				  "   WHERE j.id = c.id) "
				  "SELECT c.next_position IS NOT NULL, c.next_type, c.runner_id FROM c",
				  3, argtypes);
		if (SPI_execute_plan(fast_plan, values, nulls, false, 0) != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("complete_task could not record the success of job %lld",
							(long long) PG_GETARG_INT64(0))));
		if (SPI_processed == 1)
		{
			HeapTuple	row = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			if (DatumGetBool(SPI_getbinval(row, desc, 1, &isnull)))
			{
				/* queued at its next task: wake whoever runs it */
				workflow_require_shmem();
				workflow_wake_queue_at_commit(workflow_queue_hash(SPI_getvalue(row, desc, 2)), 1);
			}
			worker = SPI_getvalue(row, desc, 3);
			done = true;
		}
	}

	if (!done)
	{
		/* every other case: the rules in SQL */
		keep_plan(&general_plan, "SELECT * FROM workflow._complete_task($1, $2, $3)",
				  3, argtypes);
		if (SPI_execute_plan(general_plan, values, nulls, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("complete_task could not record the success of job %lld",
							(long long) PG_GETARG_INT64(0))));
		result = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &isnull));
		worker = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}

	/*
	 * The worker's heartbeat, once per transaction: a worker reporting a
	 * batch of tasks in one transaction is seen at the first of them.
	 */
	if (result && worker != NULL && !seen_in_this_transaction(worker))
	{
		Oid			seen_types[1] = {TEXTOID};

		keep_plan(&seen_plan, "SELECT workflow._runner_seen($1, 'external', NULL)",
				  1, seen_types);
		values[0] = CStringGetTextDatum(worker);
		if (SPI_execute_plan(seen_plan, values, NULL, false, 1) != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("complete_task could not record the heartbeat of worker \"%s\"",
							worker)));
	}

	SPI_finish();
	PG_RETURN_BOOL(result);
}
