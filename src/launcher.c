/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: a static background worker that starts and supervises
 *		the sweeper and the runner workers of workflow.database.
 *
 * State machine (see also src/README.md):
 *
 *	 start ──► terminate leftover workers of an earlier launcher
 *	   │
 *	   ▼
 *	 look up workflow.database ──missing──► log once, wait 1 s ──┐
 *	   │ found                                                    │
 *	   ▼                                                          │
 *	 ensure slot 0 = sweeper, slots 1..workflow.runners = runners  │
 *	 (start missing ones with a backoff per slot; stop extra ones) │
 *	   │                                                          │
 *	   └──► wait on the latch (worker start/stop, SIGHUP, 1 s) ◄───┘
 *
 * The launcher connects to no database (shared catalogs only), so it can
 * wait quietly for the database to be created.  The workers connect by
 * OID; whether the extension exists in that database is their concern:
 * they wait quietly for CREATE EXTENSION, which wakes them at commit.
 *
 * Workers are dynamic, BGW_NEVER_RESTART, and notify the launcher when
 * they start or stop: the launcher is the single owner of their lifecycle,
 * so a crash-restart cycle cannot leave duplicates.  If the launcher itself
 * dies (it is restarted by the postmaster after a few seconds), its
 * workers are terminated by the next launcher, which then starts fresh
 * ones; a runner terminated that way hands its in-flight job back to the
 * queue.
 *
 * A worker the launcher cannot start (RegisterDynamicBackgroundWorker
 * finds no free background worker slot: max_worker_processes is too low
 * for the launcher, the sweeper, workflow.runners runners and whatever
 * else the server runs) is tried again every 5 s; until it starts, its
 * slot is marked start_failed in shared memory.  workflow.runner_status
 * shows such a worker as a row with the reason (through
 * workflow._in_server_workers(), below), so that a shortfall is seen
 * where runners are looked at, not only in the server log.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "utils/snapmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <signal.h>

#include "compat.h"
#include "workflow.h"

/* per-slot state, local to the launcher */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle; /* NULL when not started */
	TimestampTz started_at;		/* last start */
	TimestampTz next_start;		/* not before this (backoff) */
	int			backoff_ms;		/* current restart backoff */
} LauncherSlot;

static LauncherSlot lslots[WF_NUM_SLOTS];
static bool register_failure_logged = false;

PG_FUNCTION_INFO_V1(workflow_in_server_workers);

static void launcher_detach(int code, Datum arg);
static void set_start_failed(int slot, bool failed);
static void terminate_leftover_workers(void);
static Oid	lookup_database(void);
static void ensure_workers(Oid dboid);
static void stop_worker(int slot);
static void start_worker(int slot, Oid dboid);

/*
 * Register the launcher; called from _PG_init in the postmaster.
 */
void
workflow_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "workflow");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "workflow_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "workflow launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "workflow launcher");
	bgw.bgw_main_arg = (Datum) 0;
	bgw.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&bgw);
}

/*
 * Entry point of the launcher.
 */
void
workflow_launcher_main(Datum main_arg)
{
	bool		waiting_logged = false;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only: the database may not exist yet */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("workflow launcher");

	workflow_require_shmem();
	SpinLockAcquire(&WorkflowShmem->mutex);
	WorkflowShmem->launcher = MyProc;
	for (i = 0; i < WF_NUM_SLOTS; i++)
		WorkflowShmem->slots[i].start_failed = false;
	SpinLockRelease(&WorkflowShmem->mutex);
	on_shmem_exit(launcher_detach, (Datum) 0);

	memset(lslots, 0, sizeof(lslots));
	terminate_leftover_workers();

	while (!ShutdownRequestPending)
	{
		Oid			dboid;

		CHECK_FOR_INTERRUPTS();
		workflow_worker_reload_if_needed();

		dboid = lookup_database();
		if (!OidIsValid(dboid))
		{
			if (!waiting_logged)
				ereport(LOG,
						(errmsg("workflow launcher is waiting for database \"%s\" to exist",
								workflow_database),
						 errhint("Create the database, or set workflow.database and restart the server.")));
			waiting_logged = true;
		}
		else
		{
			if (waiting_logged)
				ereport(LOG,
						(errmsg("workflow launcher found database \"%s\"", workflow_database)));
			waiting_logged = false;
			ensure_workers(dboid);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/*
	 * Terminated on purpose (pg_terminate_backend or shutdown): exit with 1
	 * so that the postmaster starts a new launcher unless the server is
	 * shutting down.
	 */
	proc_exit(1);
}

/*
 * Exit callback: forget our PGPROC.
 */
static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&WorkflowShmem->mutex);
	if (WorkflowShmem->launcher == MyProc)
		WorkflowShmem->launcher = NULL;
	SpinLockRelease(&WorkflowShmem->mutex);
}

/*
 * Workers of an earlier launcher incarnation have no handle here: ask them
 * to stop (a runner hands its job back first) and wait for their slots to
 * be free, at most 30 s.
 */
static void
terminate_leftover_workers(void)
{
	int			i;
	int			waited_ms = 0;

	for (;;)
	{
		int			alive = 0;

		for (i = 0; i < WF_NUM_SLOTS; i++)
		{
			pid_t		pid;

			SpinLockAcquire(&WorkflowShmem->mutex);
			pid = WorkflowShmem->slots[i].pid;
			SpinLockRelease(&WorkflowShmem->mutex);
			if (pid != 0)
			{
				if (waited_ms == 0)
					kill(pid, SIGTERM);
				alive++;
			}
		}
		if (alive == 0 || waited_ms >= 30000)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited_ms += 100;
	}
}

/*
 * OID of workflow.database, or InvalidOid while it does not exist (or does
 * not accept connections).  Without a database only the shared catalogs'
 * heaps can be read, so this is a plain heap scan of pg_database, as the
 * launcher of timescaledb does; the table is small.
 */
static Oid
lookup_database(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), workflow_database) == 0)
		{
			if (db->datallowconn && !db->datistemplate)
				dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
	return dboid;
}

/*
 * Start what should run and is not running; stop what should not run.
 */
static void
ensure_workers(Oid dboid)
{
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		LauncherSlot *ls = &lslots[i];
		bool		wanted = (i == WF_SWEEPER_SLOT) || (i <= workflow_runners);
		pid_t		pid;

		if (ls->handle != NULL &&
			GetBackgroundWorkerPid(ls->handle, &pid) == BGWH_STOPPED)
		{
			/* it exited: back off if it did not live long */
			pfree(ls->handle);
			ls->handle = NULL;
			if (TimestampDifferenceExceeds(ls->started_at, now, 10000))
				ls->backoff_ms = 1000;
			else
				ls->backoff_ms = Min(Max(ls->backoff_ms * 2, 1000), 60000);
			ls->next_start = TimestampTzPlusMilliseconds(now, ls->backoff_ms);
		}

		if (!wanted)
		{
			if (ls->handle != NULL)
				stop_worker(i);
			set_start_failed(i, false);
			continue;
		}
		if (ls->handle == NULL && now >= ls->next_start)
			start_worker(i, dboid);
	}
}

/*
 * Ask a worker to stop (SIGTERM); it is reaped by ensure_workers().
 */
static void
stop_worker(int slot)
{
	TerminateBackgroundWorker(lslots[slot].handle);
}

/*
 * Start the worker of a slot: the sweeper for slot 0, a runner otherwise.
 */
static void
start_worker(int slot, Oid dboid)
{
	BackgroundWorker bgw;
	MemoryContext oldcontext;
	bool		ok;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "workflow");
	if (slot == WF_SWEEPER_SLOT)
	{
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "workflow_sweeper_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "workflow sweeper");
		snprintf(bgw.bgw_type, BGW_MAXLEN, "workflow sweeper");
	}
	else
	{
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "workflow_runner_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "workflow runner %d", slot);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "workflow runner");
	}
	bgw.bgw_main_arg = Int32GetDatum(slot);
	memcpy(bgw.bgw_extra, &dboid, sizeof(Oid));
	bgw.bgw_notify_pid = MyProcPid;

	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, &lslots[slot].handle);
	MemoryContextSwitchTo(oldcontext);

	if (!ok)
	{
		lslots[slot].handle = NULL;
		lslots[slot].next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
		set_start_failed(slot, true);
		if (!register_failure_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("workflow launcher could not start a background worker"),
					 errhint("Raise max_worker_processes (the launcher, the sweeper and workflow.runners runners each need one) or lower workflow.runners.")));
		register_failure_logged = true;
		return;
	}
	set_start_failed(slot, false);
	register_failure_logged = false;
	lslots[slot].started_at = GetCurrentTimestamp();
}

/*
 * Record in shared memory whether the worker of a slot could not be
 * started, for workflow._in_server_workers().
 */
static void
set_start_failed(int slot, bool failed)
{
	SpinLockAcquire(&WorkflowShmem->mutex);
	WorkflowShmem->slots[slot].start_failed = failed;
	SpinLockRelease(&WorkflowShmem->mutex);
}

/*
 * workflow._in_server_workers() returns setof (id text, kind text, pid
 * integer, started_at timestamptz, problem text): the in-server workers of
 * this database as the launcher and the workers record them in shared
 * memory, for workflow.runner_status.  A row per live worker (its pid, and
 * when its process took the slot; problem NULL), and a row per worker that
 * should run and does not, with the reason in problem: the launcher found
 * no free background worker slot, or the launcher is not running.  Empty
 * in any other database than workflow.database, and when the library was
 * not preloaded.
 *
 * Shared memory is readable whatever the caller's privileges, unlike the
 * rows of pg_stat_activity of other roles' backends: the view tells every
 * role that may read it (administrators above all) which in-server
 * workers are alive.  It reveals nothing else: ids, pids and start times
 * of the extension's own workers.
 */
Datum
workflow_in_server_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *dbname;
	bool		launcher_running;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (WorkflowShmem == NULL || workflow_database == NULL)
		return (Datum) 0;
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL || strcmp(dbname, workflow_database) != 0)
		return (Datum) 0;

	SpinLockAcquire(&WorkflowShmem->mutex);
	launcher_running = WorkflowShmem->launcher != NULL;
	SpinLockRelease(&WorkflowShmem->mutex);

	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
		bool		wanted = (i == WF_SWEEPER_SLOT) || (i <= workflow_runners);
		pid_t		pid;
		TimestampTz started_at;
		bool		start_failed;
		char		id[NAMEDATALEN];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = s->pid;
		started_at = s->started_at;
		start_failed = s->start_failed;
		SpinLockRelease(&WorkflowShmem->mutex);

		if (i == WF_SWEEPER_SLOT)
			strlcpy(id, "sweeper", sizeof(id));
		else
			workflow_runner_id(i, id, sizeof(id));
		values[0] = CStringGetTextDatum(id);
		values[1] = CStringGetTextDatum(i == WF_SWEEPER_SLOT ? "sweeper" : "runner");

		if (pid != 0)
		{
			values[2] = Int32GetDatum((int32) pid);
			values[3] = TimestampTzGetDatum(started_at);
			nulls[4] = true;
		}
		else if (!launcher_running && wanted)
		{
			nulls[2] = nulls[3] = true;
			values[4] = CStringGetTextDatum("not started: the workflow launcher is not running");
		}
		else if (launcher_running && start_failed)
		{
			nulls[2] = nulls[3] = true;
			values[4] = CStringGetTextDatum(psprintf("not started: no background worker slot free; raise max_worker_processes (now %d) or lower workflow.runners",
													 max_worker_processes));
		}
		else
			continue;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
