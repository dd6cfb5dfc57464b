/*-------------------------------------------------------------------------
 *
 * worker.c
 *		What the in-server workers (runners and the sweeper) share: their
 *		slot in shared memory, connecting to the database, reloading the
 *		configuration, and checking quietly whether the extension exists.
 *
 * A worker takes the slot the launcher gave it (bgw_main_arg), records its
 * pid and its database there (bgw_extra), and clears the pid when it exits
 * (on_shmem_exit), so that the launcher, cancel_job() and the sweeper can
 * find it.  A job left `running' by a worker that died without handing it
 * back is reconciled by the sweeper.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "workflow.h"

static int	my_slot = -1;

static void worker_slot_release(int code, Datum arg);

/*
 * Take slot `slot' for this process, which serves database `dboid'.
 */
WorkflowWorkerSlot *
workflow_worker_attach(int slot, Oid dboid)
{
	WorkflowWorkerSlot *s;
	TimestampTz now = GetCurrentTimestamp();

	workflow_require_shmem();
	if (slot < 0 || slot >= WF_NUM_SLOTS)
		elog(FATAL, "workflow worker started with invalid slot %d", slot);

	s = &WorkflowShmem->slots[slot];
	/* before the pid: the launcher asks only a live worker to leave */
	pg_atomic_write_u32(&s->leave, 0);
	SpinLockAcquire(&WorkflowShmem->mutex);
	s->pid = MyProcPid;
	s->started_at = now;
	s->dboid = dboid;
	s->proc = MyProc;
	s->idle = true;
	s->idle_since = now;
	SpinLockRelease(&WorkflowShmem->mutex);
	pg_atomic_write_u64(&s->job_id, 0);
	pg_atomic_write_u64(&s->interrupt_job, 0);
	pg_atomic_write_u64(&s->batch_claimed_at, 0);

	my_slot = slot;
	on_shmem_exit(worker_slot_release, Int32GetDatum(slot));
	return s;
}

/*
 * Publish whether this worker is idle (waiting for work) and since when:
 * the sweeper writes it into the heartbeat, and the launcher takes a slot
 * from a runner idle for long enough when another database needs one.
 */
void
workflow_worker_set_idle(WorkflowWorkerSlot *slot, bool idle)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&WorkflowShmem->mutex);
	if (idle && !slot->idle)
		slot->idle_since = now;
	slot->idle = idle;
	SpinLockRelease(&WorkflowShmem->mutex);
}

/*
 * Exit callback: free our slot and tell the launcher.
 */
static void
worker_slot_release(int code, Datum arg)
{
	WorkflowWorkerSlot *s = &WorkflowShmem->slots[DatumGetInt32(arg)];
	PGPROC	   *launcher;

	SpinLockAcquire(&WorkflowShmem->mutex);
	if (s->pid == MyProcPid)
		s->pid = 0;
	launcher = WorkflowShmem->launcher;
	SpinLockRelease(&WorkflowShmem->mutex);
	pg_atomic_write_u64(&s->job_id, 0);
	pg_atomic_write_u64(&s->batch_claimed_at, 0);
	if (launcher != NULL)
		SetLatch(&launcher->procLatch);
}

/*
 * The OID of the extension in the database we are connected to, or
 * InvalidOid while it does not exist or is being created.  Must run inside
 * a transaction; never raises an error for a missing extension.
 */
Oid
workflow_extension_ready(void)
{
	Oid			extoid = get_extension_oid("workflow", true);

	if (!OidIsValid(extoid))
		return InvalidOid;
	if (creating_extension && CurrentExtensionObject == extoid)
		return InvalidOid;
	return extoid;
}

/*
 * Apply a pending configuration reload (SIGHUP).
 */
void
workflow_worker_reload_if_needed(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Start a transaction with SPI and a snapshot (the order of worker_spi).
 */
void
workflow_begin_spi(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "workflow worker could not connect to SPI");
	PushActiveSnapshot(GetTransactionSnapshot());
}

/*
 * Finish SPI and commit (or roll back) the transaction, then flush
 * statistics (PG15 only flushes them when a process asks).
 */
void
workflow_end_spi(bool commit)
{
	SPI_finish();
	PopActiveSnapshot();
	if (commit)
		CommitTransactionCommand();
	else
		AbortCurrentTransaction();
	pgstat_report_stat(false);
}

/*
 * Connect a runner or the sweeper to its database, as the bootstrap
 * superuser, with search_path pinned to pg_catalog for the whole session:
 * nothing a role plants in public (an operator, a function) is ever
 * picked up by the workers' own SQL, which runs as a superuser.  Tasks set
 * their workflow's search_path inside their own security context.
 */
void
workflow_worker_connect(Oid dboid)
{
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
}
