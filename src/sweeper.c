/*-------------------------------------------------------------------------
 *
 * sweeper.c
 *		The sweeper background worker: every workflow.activity_interval it
 *		writes the heartbeats of the in-server workers (from shared memory,
 *		so a runner busy with a long task never looks dead), ends elapsed
 *		wait timers, enforces job timeouts, applies the on_stale policy to
 *		the jobs of runners that stopped reporting and whose process is
 *		gone, and prunes finished jobs older than workflow.retention.
 *
 * With workflow.enabled = off it only writes heartbeats: a paused system
 * neither runs nor cancels anything.
 *
 * The work itself is SQL (workflow._sweep) in small batches with SKIP
 * LOCKED, so the sweeper never blocks the queue; when a batch was full it
 * goes on at once instead of waiting for the next period.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "compat.h"
#include "workflow.h"

#define SWEEP_BATCH 500

static Oid	registered_extension = InvalidOid;

static bool sweep_once(void);
static void heartbeat(void);

/*
 * Entry point of the sweeper.
 */
void
workflow_sweeper_main(Datum main_arg)
{
	Oid			dboid;
	WorkflowWorkerSlot *slot;
	MemoryContext loop_context;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	slot = workflow_worker_attach(WF_SWEEPER_SLOT);
	workflow_worker_connect(dboid);
	pgstat_report_appname("workflow sweeper");

	loop_context = AllocSetContextCreate(TopMemoryContext, "workflow sweeper",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		more;

		CHECK_FOR_INTERRUPTS();
		workflow_worker_reload_if_needed();
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		slot->alive_at = GetCurrentTimestamp();
		ResetLatch(MyLatch);

		pgstat_report_activity(STATE_RUNNING, "workflow sweep");
		more = sweep_once();
		pgstat_report_activity(STATE_IDLE, NULL);

		if (!more)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 workflow_activity_interval, PG_WAIT_EXTENSION);
	}
}

/*
 * One pass in one transaction.  Returns true when a batch was full and the
 * sweeper should go on at once.
 */
static bool
sweep_once(void)
{
	Oid			extoid;
	Oid			argtypes[3] = {TEXTOID, INTERVALOID, INT4OID};
	Datum		values[3];
	Interval   *retention;
	bool		more = false;

	workflow_begin_spi();
	extoid = workflow_extension_ready();
	if (!OidIsValid(extoid))
	{
		registered_extension = InvalidOid;
		workflow_end_spi(true);
		return false;
	}
	if (extoid != registered_extension)
	{
		if (SPI_execute("SELECT workflow.register_runner('sweeper', 'sweeper')",
						false, 0) != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("workflow sweeper could not register itself")));
		registered_extension = extoid;
	}

	heartbeat();

	/* workflow.enabled = off pauses the sweeper's changes to jobs too */
	if (!workflow_enabled)
	{
		workflow_end_spi(true);
		return false;
	}

	retention = palloc0(sizeof(Interval));
	retention->time = (int64) workflow_retention * USECS_PER_SEC;
	values[0] = CStringGetTextDatum(workflow_stale_job_action == WF_STALE_RETRY ?
									"retry" : "cancel");
	values[1] = IntervalPGetDatum(retention);
	values[2] = Int32GetDatum(SWEEP_BATCH);
	if (SPI_execute_with_args("SELECT (s->>'timers')::int, (s->>'timeouts')::int, "
							  "(s->>'stale')::int, (s->>'pruned')::int "
							  "FROM workflow._sweep($1, $2, $3) s",
							  3, argtypes, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("workflow sweeper could not sweep")));
	else
	{
		int			i;

		for (i = 1; i <= 4; i++)
		{
			bool		isnull;
			int32		n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, i, &isnull));

			if (!isnull && n >= SWEEP_BATCH)
				more = true;
		}
	}

	workflow_end_spi(true);
	return more;
}

/*
 * Write the heartbeats of every live in-server worker from shared memory.
 */
static void
heartbeat(void)
{
	Datum		ids[WF_NUM_SLOTS];
	Datum		pids[WF_NUM_SLOTS];
	Datum		idle[WF_NUM_SLOTS];
	int			n = 0;
	int			i;
	Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, BOOLARRAYOID};
	Datum		values[3];

	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
		pid_t		pid;
		bool		is_idle;
		char		id[NAMEDATALEN];

		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = s->pid;
		is_idle = s->idle;
		SpinLockRelease(&WorkflowShmem->mutex);
		if (pid == 0)
			continue;
		if (i == WF_SWEEPER_SLOT)
			strlcpy(id, "sweeper", sizeof(id));
		else
			workflow_runner_id(i, id, sizeof(id));
		ids[n] = CStringGetTextDatum(id);
		pids[n] = Int32GetDatum((int32) pid);
		idle[n] = BoolGetDatum(is_idle);
		n++;
	}

	values[0] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(pids, n, INT4OID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(idle, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	if (SPI_execute_with_args("SELECT workflow._heartbeat($1, $2, $3)",
							  3, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("workflow sweeper could not write heartbeats")));
}
