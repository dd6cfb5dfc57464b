/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: a static background worker that starts and supervises
 *		a sweeper in every database it serves, and shares one pool of
 *		workflow.runners runners between those databases.
 *
 * State machine of a database (its entry in the table of src/databases.c;
 * see also src/README.md):
 *
 *	  (no entry) ──a poke (a commit there), poll_tasks, a probe──► new
 *	      ▲                                                         │
 *	      │                                  its sweeper starts ◄───┘
 *	      │                                          │
 *	      ├──── the sweeper finds no extension ◄─────┤ (it exits; unless
 *	      │                                          │  poked meanwhile)
 *	      │                                          ▼
 *	      │                                  served: sweeper kept,
 *	      │                                  runners sent on demand
 *	      │                                          │
 *	      ├──── not listed any more, a template, ◄───┤
 *	      │     no connections, dropped              │
 *	      │     (its workers stopped first)          │ DROP DATABASE,
 *	      │                                          ▼ RENAME, ...
 *	      └──── the DROP commits ◄──────────── paused: workers stopped,
 *	                                           none started; any other
 *	                                           end: as before
 *
 * The pool of runners.  The runner of slot N (runner-N, N in
 * 1..workflow.runners) is a process that serves one database for life; the
 * launcher decides which database each slot's next runner serves:
 *
 *	- a database `wants' a runner when jobs of the runners' queue wait in it
 *	  (a commit found no idle runner there to wake and poked the launcher,
 *	  its sweeper counted due jobs, or a runner of it has claimed jobs it
 *	  has not started for BACKLOG_AFTER_MS) and no runner of it is idle or
 *	  starting;
 *	- a free slot goes to a database that wants one (the one with the
 *	  fewest runners first), else to the served database with the fewest
 *	  runners: idle runners wait where work may come, so that a commit
 *	  there wakes one at once; for the same reason, a runner idle for
 *	  IDLE_RECLAIM_MS in a database without work that has two or more
 *	  moves to a served database that has none;
 *	- with no free slot, a database that wants a runner and has fewer than
 *	  its fair share (the slots divided by the databases that have work, at
 *	  least one each) gets one from another database: the runner of a
 *	  database over its share that has been idle the longest (the last
 *	  runner of a database only after IDLE_RECLAIM_MS), else a busy runner
 *	  of the database most over its share, which finishes the task it runs
 *	  and hands back the jobs of its batch that it has not started; with
 *	  more databases that have work than slots, the runner that has served
 *	  its database longest moves on after ROTATE_AFTER_MS (round robin);
 *	- a runner asked to leave (its slot's `leave') exits cleanly, and the
 *	  freed slot goes to the database that wanted it at the next pass.
 *
 * Probes.  After a start the launcher reads pg_database and probes every
 * database the workers may serve (listed, connectable, not a template) at
 * most WF_MAX_PROBES at a time: a probe is an entry with a sweeper, which
 * stays if the extension is there and exits if not.  pg_database is read
 * again every second (renames, ALTER DATABASE, drops) and at once when an
 * entry appears, a sweeper dies, or workflow.database changes (which
 * probes every database again).
 *
 * The launcher connects to no database (shared catalogs only): it needs
 * none, and so never blocks DROP DATABASE.  The workers connect by OID.
 *
 * Workers are dynamic, BGW_NEVER_RESTART, and notify the launcher when
 * they start or stop: the launcher is the single owner of their lifecycle,
 * so a crash-restart cycle cannot leave duplicates.  A worker that died on
 * its own is started again after a backoff per slot (1 s, doubling up to a
 * minute while it keeps dying within 10 s); one the launcher stopped or
 * asked to leave is not a failure.  If the launcher itself dies (it is
 * restarted by the postmaster after a few seconds), its workers are
 * terminated by the next launcher, which then starts fresh ones; a runner
 * terminated that way hands its in-flight job back to the queue.
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
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include <signal.h>

#include "compat.h"
#include "workflow.h"

/* at most this many databases are probed at once */
#define WF_MAX_PROBES 2
/* pg_database is read again at least this often */
#define SCAN_INTERVAL_MS 1000
/* the last runner of a database is taken only once idle this long */
#define IDLE_RECLAIM_MS 1000
/* more databases with work than runners: a runner moves on after this */
#define ROTATE_AFTER_MS 5000
/*
 * A runner's batch whose jobs were claimed this long ago and are not all
 * started is a backlog (as long as an idle runner of the same database
 * waits before taking them over: STEAL_AFTER_MS of src/runner.c).
 */
#define BACKLOG_AFTER_MS 100

/* per-slot state, local to the launcher */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle; /* NULL when not started */
	Oid			dboid;			/* the database it was started for */
	TimestampTz started_at;		/* last start */
	TimestampTz next_start;		/* not before this (backoff) */
	int			backoff_ms;		/* current restart backoff */
	bool		stopping;		/* stopped or asked to leave: no failure */
} LauncherSlot;

/* what the launcher knows of an entry of the table (same index) */
typedef struct LauncherDb
{
	Oid			dboid;			/* the entry's database when last seen */
	bool		checked;		/* found in pg_database by a scan since */
	bool		valid;			/* ... listed, connectable, not a template */
	bool		serving_logged; /* "serves" was logged */
	bool		wants;			/* poked: wants a runner until one idles */
	char		name[NAMEDATALEN];
} LauncherDb;

/* the shared entries as read at the start of a pass */
typedef struct DbSnapshot
{
	Oid			dboid;
	bool		served;
	bool		absent;
	uint32		absent_pokes;
	bool		paused;
	bool		released;
	PGPROC	   *paused_by;
	pid_t		paused_pid;
	uint32		pokes;
	uint32		queued;
} DbSnapshot;

/* a database of pg_database at the last scan */
typedef struct Candidate
{
	Oid			dboid;
	bool		eligible;		/* listed, connectable, not a template */
	NameData	name;
} Candidate;

static LauncherSlot lslots[WF_NUM_SLOTS];
static LauncherDb ldbs[WF_MAX_DATABASES];
static DbSnapshot snap[WF_MAX_DATABASES];

static Candidate *cands = NULL;
static int	ncands = 0;
static int	maxcands = 0;

/* databases probed by this launcher and found without the extension */
static HTAB *probed = NULL;

static bool need_scan = true;
static bool check_missing = false;	/* log the listed databases not found */
static TimestampTz next_scan = 0;
static char *scanned_list = NULL;	/* workflow.database at the last scan */
static int	fill_next = 0;			/* round robin of the idle fill */
static bool register_failure_logged = false;
static bool full_logged = false;

PG_FUNCTION_INFO_V1(workflow_in_server_workers);

static void launcher_detach(int code, Datum arg);
static void set_start_failed(int slot, bool failed);
static void terminate_leftover_workers(void);
static void launcher_pass(void);
static void reap_workers(TimestampTz now);
static void read_databases(void);
static void scan_databases(void);
static void log_missing_databases(void);
static void manage_databases(TimestampTz now);
static void start_probes(int nunconfirmed);
static void manage_runners(TimestampTz now);
static int	choose_leaver(int k, const int *slot_db, const bool *slot_idle,
						  const TimestampTz *slot_idle_since, const bool *slot_attached,
						  const int *r, const bool *inW, int nW, int fair, TimestampTz now);
static void ask_to_leave(int slot);
static int	entry_of(Oid dboid);
static int	stop_database_workers(Oid dboid);
static void handle_pause(int k);
static void retire_database(int k, bool absent);
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
 * Set the launcher's latch (a database wants a runner, a worker or a
 * command has news for it).  Safe in a commit callback.
 */
void
workflow_poke_launcher(void)
{
	PGPROC	   *launcher;

	if (WorkflowShmem == NULL)
		return;
	SpinLockAcquire(&WorkflowShmem->mutex);
	launcher = WorkflowShmem->launcher;
	SpinLockRelease(&WorkflowShmem->mutex);
	if (launcher != NULL)
		SetLatch(&launcher->procLatch);
}

/*
 * Entry point of the launcher.
 */
void
workflow_launcher_main(Datum main_arg)
{
	MemoryContext pass_context;
	HASHCTL		ctl;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only: the launcher serves several databases */
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
	memset(ldbs, 0, sizeof(ldbs));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(Oid);
	probed = hash_create("workflow launcher probed databases", 64, &ctl,
						 HASH_ELEM | HASH_BLOBS);
	terminate_leftover_workers();

	pass_context = AllocSetContextCreate(TopMemoryContext, "workflow launcher",
										 ALLOCSET_DEFAULT_SIZES);
	while (!ShutdownRequestPending)
	{
		CHECK_FOR_INTERRUPTS();
		workflow_worker_reload_if_needed();
		MemoryContextReset(pass_context);
		MemoryContextSwitchTo(pass_context);

		launcher_pass();

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
 * One pass: reap the workers that exited, look at the table and (when
 * due) at pg_database, then start and stop sweepers and runners.
 */
static void
launcher_pass(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext pass_context = CurrentMemoryContext;

	reap_workers(now);
	read_databases();

	if (scanned_list == NULL || strcmp(scanned_list, workflow_database) != 0)
	{
		/* a new list: every database may be served (or not) now */
		HASH_SEQ_STATUS status;
		Oid		   *oid;

		hash_seq_init(&status, probed);
		while ((oid = (Oid *) hash_seq_search(&status)) != NULL)
			(void) hash_search(probed, oid, HASH_REMOVE, NULL);
		if (scanned_list != NULL)
			pfree(scanned_list);
		scanned_list = MemoryContextStrdup(TopMemoryContext, workflow_database);
		need_scan = true;
		check_missing = true;
	}
	if (need_scan || now >= next_scan)
	{
		need_scan = false;
		next_scan = TimestampTzPlusMilliseconds(now, SCAN_INTERVAL_MS);
		scan_databases();
		MemoryContextSwitchTo(pass_context);
	}

	manage_databases(now);
	manage_runners(now);
}

/*
 * Forget the handles of the workers that exited; back off a slot whose
 * worker died on its own.
 */
static void
reap_workers(TimestampTz now)
{
	int			i;

	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		LauncherSlot *ls = &lslots[i];
		pid_t		pid;
		BgwHandleStatus status;

		if (ls->handle == NULL)
			continue;
		status = GetBackgroundWorkerPid(ls->handle, &pid);
		if (status == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		if (status != BGWH_STOPPED)
			continue;
		pfree(ls->handle);
		ls->handle = NULL;
		if (ls->stopping)
		{
			ls->backoff_ms = 0;
			ls->next_start = 0;
		}
		else
		{
			if (TimestampDifferenceExceeds(ls->started_at, now, 10000))
				ls->backoff_ms = 1000;
			else
				ls->backoff_ms = Min(Max(ls->backoff_ms * 2, 1000), 60000);
			ls->next_start = TimestampTzPlusMilliseconds(now, ls->backoff_ms);
			/* a sweeper that died: its database may be gone */
			if (WF_IS_SWEEPER_SLOT(i))
				need_scan = true;
		}
		ls->stopping = false;
	}
}

/*
 * Read the shared table into snap[]; notice new entries (to be checked
 * against pg_database) and pokes.
 */
static void
read_databases(void)
{
	int			k;

	LWLockAcquire(WorkflowShmem->lock, LW_SHARED);
	for (k = 0; k < WF_MAX_DATABASES; k++)
	{
		WorkflowDatabase *e = &WorkflowShmem->databases[k];
		DbSnapshot *s = &snap[k];

		s->dboid = e->dboid;
		s->served = e->served;
		s->absent = e->absent;
		s->absent_pokes = e->absent_pokes;
		s->paused = e->paused;
		s->released = e->released;
		s->paused_by = e->paused_by;
		s->paused_pid = e->paused_pid;
		s->pokes = pg_atomic_read_u32(&e->pokes);
		s->queued = pg_atomic_read_u32(&e->queued);
	}
	LWLockRelease(WorkflowShmem->lock);

	for (k = 0; k < WF_MAX_DATABASES; k++)
	{
		LauncherDb *l = &ldbs[k];

		if (snap[k].dboid != l->dboid)
		{
			/* a new entry, or one forgotten (a DROP DATABASE): look again */
			memset(l, 0, sizeof(LauncherDb));
			l->dboid = snap[k].dboid;
			need_scan = true;
		}
		if (OidIsValid(l->dboid) &&
			pg_atomic_exchange_u32(&WorkflowShmem->databases[k].poke_pending, 0) != 0)
			l->wants = true;
	}
}

/*
 * Read pg_database: which databases the workers may serve (listed,
 * connectable, not a template, not half-dropped), which entries are still
 * such databases, and which databases to probe.  Without a database
 * connection only the shared catalogs' heaps can be read, so this is a
 * plain heap scan, as the launcher of timescaledb does; the table is small.
 * Leaves CurrentMemoryContext at TopMemoryContext.
 */
static void
scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS status;
	Oid		   *oid;
	int			k;
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	ncands = 0;
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		Candidate  *c;

		if (ncands >= maxcands)
		{
			int			newmax = Max(maxcands * 2, 16);

			cands = cands == NULL ?
				MemoryContextAlloc(TopMemoryContext, newmax * sizeof(Candidate)) :
				repalloc(cands, newmax * sizeof(Candidate));
			maxcands = newmax;
		}
		c = &cands[ncands++];
		c->dboid = db->oid;
		namestrcpy(&c->name, NameStr(db->datname));
		c->eligible = db->datallowconn && !db->datistemplate &&
			!database_is_invalid_form(db) &&
			workflow_database_listed(NameStr(db->datname));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	if (check_missing)
		log_missing_databases();
	CommitTransactionCommand();

	for (k = 0; k < WF_MAX_DATABASES; k++)
	{
		LauncherDb *l = &ldbs[k];

		if (!OidIsValid(l->dboid))
			continue;
		l->checked = true;
		l->valid = false;
		for (i = 0; i < ncands; i++)
		{
			if (cands[i].dboid == l->dboid)
			{
				l->valid = cands[i].eligible;
				strlcpy(l->name, NameStr(cands[i].name), NAMEDATALEN);
				break;
			}
		}
	}

	/* a database dropped, or not to be served any more: probed again later */
	hash_seq_init(&status, probed);
	while ((oid = (Oid *) hash_seq_search(&status)) != NULL)
	{
		bool		keep = false;

		for (i = 0; i < ncands; i++)
			if (cands[i].dboid == *oid)
				keep = cands[i].eligible;
		if (!keep)
			(void) hash_search(probed, oid, HASH_REMOVE, NULL);
	}
}

/*
 * Log, once per value of workflow.database, the databases it names that do
 * not exist (yet): they are served once created, with the extension.
 */
static void
log_missing_databases(void)
{
	List	   *names;
	char	   *raw = pstrdup(workflow_database);
	ListCell   *lc;
	int			i;

	check_missing = false;
	if (!SplitGUCList(raw, ',', &names))
		return;
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		bool		found = strcmp(name, "*") == 0;

		for (i = 0; i < ncands && !found; i++)
			found = strcmp(NameStr(cands[i].name), name) == 0;
		if (!found)
			ereport(LOG,
					(errmsg("workflow is waiting for database \"%s\" to exist", name),
					 errhint("Create the database and the extension in it, or change workflow.database and reload the configuration.")));
	}
}

/*
 * The index of the entry of `dboid' in snap[], or -1.
 */
static int
entry_of(Oid dboid)
{
	int			k;

	if (!OidIsValid(dboid))
		return -1;
	for (k = 0; k < WF_MAX_DATABASES; k++)
		if (snap[k].dboid == dboid)
			return k;
	return -1;
}

/*
 * Ask every worker of `dboid' to stop; returns how many have not exited
 * yet.
 */
static int
stop_database_workers(Oid dboid)
{
	int			i;
	int			n = 0;

	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		if (lslots[i].handle == NULL || lslots[i].dboid != dboid)
			continue;
		stop_worker(i);
		n++;
	}
	return n;
}

/*
 * The sweepers, the pauses and the end of each entry (the state machine
 * of the file header), then the probes.
 */
static void
manage_databases(TimestampTz now)
{
	int			nunconfirmed = 0;
	int			k;

	for (k = 0; k < WF_MAX_DATABASES; k++)
	{
		DbSnapshot *e = &snap[k];
		LauncherDb *l = &ldbs[k];
		int			s = WF_SWEEPER_SLOT(k);

		/* the sweeper of an earlier database of this entry */
		if (lslots[s].handle != NULL && lslots[s].dboid != e->dboid)
			stop_worker(s);
		if (!OidIsValid(e->dboid))
			continue;

		if (e->paused)
		{
			handle_pause(k);
			continue;
		}
		if (!l->checked)
			continue;			/* the next scan tells */
		if (!l->valid)
		{
			retire_database(k, false);
			continue;
		}
		if (e->absent)
		{
			if (lslots[s].handle != NULL)
				continue;		/* its sweeper is exiting */
			if (e->pokes == e->absent_pokes)
			{
				retire_database(k, true);
				continue;
			}
			/* poked since it looked: someone has just created the extension */
			LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
			if (WorkflowShmem->databases[k].dboid == e->dboid)
				WorkflowShmem->databases[k].absent = false;
			LWLockRelease(WorkflowShmem->lock);
			e->absent = false;
			lslots[s].next_start = 0;
			lslots[s].backoff_ms = 0;
		}

		if (!e->served)
			nunconfirmed++;
		else if (!l->serving_logged)
		{
			ereport(LOG,
					(errmsg("workflow serves database \"%s\"", l->name)));
			l->serving_logged = true;
		}
		if (lslots[s].handle == NULL && now >= lslots[s].next_start)
			start_worker(s, e->dboid);
	}

	start_probes(nunconfirmed);
}

/*
 * A paused database (src/databases.c): stop its workers, and once they are
 * all gone tell the backend that paused it.  A pause whose backend exited
 * ends here.
 */
static void
handle_pause(int k)
{
	DbSnapshot *e = &snap[k];
	WorkflowDatabase *shared = &WorkflowShmem->databases[k];

	if (e->paused_by == NULL || e->paused_by->pid != e->paused_pid)
	{
		LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
		if (shared->dboid == e->dboid && shared->paused &&
			shared->paused_pid == e->paused_pid)
		{
			shared->paused = false;
			shared->released = false;
			shared->paused_by = NULL;
			shared->paused_pid = 0;
		}
		LWLockRelease(WorkflowShmem->lock);
		need_scan = true;
		return;
	}
	if (stop_database_workers(e->dboid) > 0 || e->released)
		return;
	LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
	if (shared->dboid == e->dboid && shared->paused &&
		shared->paused_pid == e->paused_pid)
	{
		shared->released = true;
		SetLatch(&e->paused_by->procLatch);
	}
	LWLockRelease(WorkflowShmem->lock);
}

/*
 * The database of entry k is not to be served (any more): stop its
 * workers, and once they are gone forget the entry.  `absent': its sweeper
 * found no extension (a probe): not probed again until the list changes.
 */
static void
retire_database(int k, bool absent)
{
	Oid			dboid = snap[k].dboid;
	bool		forgotten = false;

	if (stop_database_workers(dboid) > 0)
		return;

	LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
	if (WorkflowShmem->databases[k].dboid == dboid && !WorkflowShmem->databases[k].paused)
	{
		WorkflowShmem->databases[k].dboid = InvalidOid;
		forgotten = true;
	}
	LWLockRelease(WorkflowShmem->lock);
	if (!forgotten)
		return;

	if (absent)
		(void) hash_search(probed, &dboid, HASH_ENTER, NULL);
	if (ldbs[k].serving_logged)
		ereport(LOG,
				(errmsg("workflow no longer serves database \"%s\"", ldbs[k].name)));
	memset(&ldbs[k], 0, sizeof(LauncherDb));
	snap[k].dboid = InvalidOid;
	lslots[WF_SWEEPER_SLOT(k)].next_start = 0;
	lslots[WF_SWEEPER_SLOT(k)].backoff_ms = 0;
	full_logged = false;
}

/*
 * Probe the databases the workers may serve that have no entry and were not
 * probed yet, while fewer than WF_MAX_PROBES entries wait for their
 * sweeper's answer.
 */
static void
start_probes(int nunconfirmed)
{
	int			i;

	for (i = 0; i < ncands && nunconfirmed < WF_MAX_PROBES; i++)
	{
		Candidate  *c = &cands[i];
		bool		full;
		int			k;

		if (!c->eligible || entry_of(c->dboid) >= 0 ||
			hash_search(probed, &c->dboid, HASH_FIND, NULL) != NULL)
			continue;
		k = workflow_database_add(c->dboid, &full);
		if (k < 0)
		{
			if (full && !full_logged)
			{
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("workflow cannot serve database \"%s\"", NameStr(c->name)),
						 errdetail("The workers serve at most %d databases.", WF_MAX_DATABASES),
						 errhint("Drop the extension from the databases that do not use it, or list the databases to serve in workflow.database.")));
				full_logged = true;
			}
			if (full)
				return;
			continue;
		}
		full_logged = false;
		memset(&ldbs[k], 0, sizeof(LauncherDb));
		ldbs[k].dboid = c->dboid;
		ldbs[k].checked = true;
		ldbs[k].valid = true;
		strlcpy(ldbs[k].name, NameStr(c->name), NAMEDATALEN);
		memset(&snap[k], 0, sizeof(DbSnapshot));
		snap[k].dboid = c->dboid;
		lslots[WF_SWEEPER_SLOT(k)].next_start = 0;
		start_worker(WF_SWEEPER_SLOT(k), c->dboid);
		nunconfirmed++;
	}
}

/*
 * The pool of runners (the file header): stop the runners of slots beyond
 * workflow.runners and of databases not served, give the free slots to the
 * databases that want a runner and then to the served ones with the
 * fewest, and take slots from databases over their fair share for the
 * databases under theirs.
 */
static void
manage_runners(TimestampTz now)
{
	int			nrun = workflow_runners;
	int			r[WF_MAX_DATABASES];
	int			idle[WF_MAX_DATABASES];
	int			busy[WF_MAX_DATABASES];
	int			starting[WF_MAX_DATABASES];
	bool		runnable[WF_MAX_DATABASES];
	bool		backlog[WF_MAX_DATABASES];
	bool		wants[WF_MAX_DATABASES];
	bool		inW[WF_MAX_DATABASES];
	int			slot_db[WF_NUM_SLOTS];
	bool		slot_idle[WF_NUM_SLOTS];
	bool		slot_attached[WF_NUM_SLOTS];
	TimestampTz slot_idle_since[WF_NUM_SLOTS];
	int			free_slots[WF_MAX_RUNNERS];
	int			nfree = 0;
	int			next_free = 0;
	int			nleaving = 0;
	int			nW = 0;
	int			fair;
	int			short_dbs = 0;
	int			i;
	int			k;

	memset(r, 0, sizeof(r));
	memset(idle, 0, sizeof(idle));
	memset(busy, 0, sizeof(busy));
	memset(starting, 0, sizeof(starting));
	memset(inW, 0, sizeof(inW));
	memset(backlog, 0, sizeof(backlog));
	memset(wants, 0, sizeof(wants));
	memset(slot_idle, 0, sizeof(slot_idle));
	memset(slot_attached, 0, sizeof(slot_attached));
	for (k = 0; k < WF_MAX_DATABASES; k++)
		runnable[k] = OidIsValid(snap[k].dboid) && snap[k].served && !snap[k].absent &&
			!snap[k].paused && ldbs[k].checked && ldbs[k].valid;

	for (i = 0; i < WF_NUM_SLOTS; i++)
		slot_db[i] = -1;
	for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS; i++)
	{
		LauncherSlot *ls = &lslots[i];
		WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
		pid_t		pid;
		Oid			sdb;
		bool		sidle;
		TimestampTz since;

		if (ls->handle == NULL)
		{
			if (i <= nrun && now >= ls->next_start)
				free_slots[nfree++] = i;
			continue;
		}
		k = entry_of(ls->dboid);
		if (!ls->stopping && (i > nrun || k < 0 || !runnable[k]))
			stop_worker(i);
		if (ls->stopping)
		{
			if (i <= nrun)
				nleaving++;
			continue;
		}

		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = s->pid;
		sdb = s->dboid;
		sidle = s->idle;
		since = s->idle_since;
		SpinLockRelease(&WorkflowShmem->mutex);

		slot_db[i] = k;
		r[k]++;
		if (pid == 0 || sdb != ls->dboid)
			starting[k]++;
		else
		{
			slot_attached[i] = true;
			if (sidle)
			{
				idle[k]++;
				slot_idle[i] = true;
				slot_idle_since[i] = since;
			}
			else
			{
				uint64		claimed = pg_atomic_read_u64(&s->batch_claimed_at);

				busy[k]++;
				if (claimed != 0 &&
					TimestampDifferenceExceeds((TimestampTz) claimed, now, BACKLOG_AFTER_MS))
					backlog[k] = true;
			}
		}
	}

	for (k = 0; k < WF_MAX_DATABASES; k++)
	{
		if (!runnable[k])
			continue;
		/* a runner of it waits for work: what it was poked for is taken */
		if (idle[k] > 0)
			ldbs[k].wants = false;
		wants[k] = (ldbs[k].wants || snap[k].queued > 0 || backlog[k]) &&
			idle[k] == 0 && starting[k] == 0;
		if (busy[k] > 0 || wants[k])
		{
			inW[k] = true;
			nW++;
		}
	}
	fair = nW > 0 ? Max(1, nrun / nW) : 0;

	/* free slots: first to the databases that want a runner, fewest first */
	while (next_free < nfree)
	{
		int			best = -1;

		for (k = 0; k < WF_MAX_DATABASES; k++)
			if (wants[k] && (best < 0 || r[k] < r[best]))
				best = k;
		if (best < 0)
			break;
		start_worker(free_slots[next_free++], snap[best].dboid);
		wants[best] = false;
		r[best]++;
	}

	/* then to the served databases with the fewest runners */
	while (next_free < nfree)
	{
		int			best = -1;
		int			j;

		for (j = 0; j < WF_MAX_DATABASES; j++)
		{
			k = (fill_next + j) % WF_MAX_DATABASES;
			if (runnable[k] && (best < 0 || r[k] < r[best]))
				best = k;
		}
		if (best < 0)
			break;
		start_worker(free_slots[next_free++], snap[best].dboid);
		r[best]++;
		fill_next = (best + 1) % WF_MAX_DATABASES;
	}

	/* no free slot: databases under their share take one from others */
	if (next_free < nfree || !workflow_enabled || nrun == 0)
		return;
	for (k = 0; k < WF_MAX_DATABASES; k++)
		if (wants[k] && r[k] < fair)
			short_dbs++;
	for (k = 0; k < WF_MAX_DATABASES && nleaving < short_dbs; k++)
	{
		int			leaver;

		if (!wants[k] || r[k] >= fair)
			continue;
		leaver = choose_leaver(k, slot_db, slot_idle, slot_idle_since, slot_attached,
							   r, inW, nW, fair, now);
		if (leaver < 0)
			continue;
		ask_to_leave(leaver);
		r[slot_db[leaver]]--;
		slot_db[leaver] = -1;
		nleaving++;
	}

	/*
	 * Nothing else to do: spread the idle runners, one at a time, from a
	 * database without work that has two or more to a served one that has
	 * none, so that a commit there finds a runner to wake.
	 */
	if (nleaving == 0)
	{
		int			empty = -1;
		int			leaver = -1;

		for (k = 0; k < WF_MAX_DATABASES && empty < 0; k++)
			if (runnable[k] && r[k] == 0)
				empty = k;
		for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS && empty >= 0; i++)
		{
			int			j = slot_db[i];

			if (j < 0 || !slot_idle[i] || inW[j] || r[j] < 2 ||
				!TimestampDifferenceExceeds(slot_idle_since[i], now, IDLE_RECLAIM_MS))
				continue;
			if (leaver < 0 || slot_idle_since[i] < slot_idle_since[leaver])
				leaver = i;
		}
		if (leaver >= 0)
			ask_to_leave(leaver);
	}
}

/*
 * The runner slot to take for database k (which wants a runner and has
 * fewer than its share), or -1 (the file header gives the order).
 */
static int
choose_leaver(int k, const int *slot_db, const bool *slot_idle,
			  const TimestampTz *slot_idle_since, const bool *slot_attached,
			  const int *r, const bool *inW, int nW, int fair, TimestampTz now)
{
	int			best = -1;
	int			best_excess = 0;
	int			i;

	/* an idle runner of a database over its share, idle the longest */
	for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS; i++)
	{
		int			j = slot_db[i];

		if (j < 0 || j == k || !slot_idle[i])
			continue;
		if (r[j] <= (inW[j] ? fair : 0))
			continue;
		if (r[j] < 2 && !TimestampDifferenceExceeds(slot_idle_since[i], now, IDLE_RECLAIM_MS))
			continue;
		if (best < 0 || slot_idle_since[i] < slot_idle_since[best])
			best = i;
	}
	if (best >= 0)
		return best;

	/* a busy runner of the database most over its share */
	for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS; i++)
	{
		int			j = slot_db[i];
		int			excess;

		if (j < 0 || j == k || !slot_attached[i] || slot_idle[i])
			continue;
		excess = r[j] - (inW[j] ? fair : 0);
		if (excess > best_excess)
		{
			best = i;
			best_excess = excess;
		}
	}
	if (best >= 0)
		return best;

	/* more databases with work than runners: round robin */
	if (nW > workflow_runners && r[k] == 0)
	{
		for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS; i++)
		{
			int			j = slot_db[i];

			if (j < 0 || j == k || !slot_attached[i])
				continue;
			if (!TimestampDifferenceExceeds(lslots[i].started_at, now, ROTATE_AFTER_MS))
				continue;
			if (best < 0 || lslots[i].started_at < lslots[best].started_at)
				best = i;
		}
	}
	return best;
}

/*
 * Ask the runner of a slot to leave its database: it hands back the jobs
 * it has not started and exits after the task it runs (src/runner.c).
 */
static void
ask_to_leave(int slot)
{
	WorkflowWorkerSlot *s = &WorkflowShmem->slots[slot];
	PGPROC	   *proc;

	pg_atomic_write_u32(&s->leave, 1);
	SpinLockAcquire(&WorkflowShmem->mutex);
	proc = s->pid != 0 ? s->proc : NULL;
	SpinLockRelease(&WorkflowShmem->mutex);
	if (proc != NULL)
		SetLatch(&proc->procLatch);
	lslots[slot].stopping = true;
}

/*
 * Ask a worker to stop (SIGTERM); it is reaped by reap_workers().
 */
static void
stop_worker(int slot)
{
	if (lslots[slot].handle == NULL || lslots[slot].stopping)
		return;
	TerminateBackgroundWorker(lslots[slot].handle);
	lslots[slot].stopping = true;
}

/*
 * Start the worker of a slot for database `dboid': the sweeper of an
 * entry, or a runner.
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
	if (WF_IS_SWEEPER_SLOT(slot))
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
					 errhint("Raise max_worker_processes (the launcher, a sweeper per served database and workflow.runners runners each need one) or lower workflow.runners.")));
		register_failure_logged = true;
		return;
	}
	set_start_failed(slot, false);
	register_failure_logged = false;
	lslots[slot].dboid = dboid;
	lslots[slot].stopping = false;
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
 * memory, for workflow.runner_status.  A row per live worker connected to
 * this database (its pid, and when its process took the slot; problem
 * NULL), and a row per worker that should run and does not, with the
 * reason in problem: a runner of the pool the launcher found no free
 * background worker slot for (the pool serves every database, so every
 * served database shows it), or, when the launcher is not running, this
 * database's sweeper.  Empty in a database that workflow.database does not
 * list, and when the library was not preloaded.
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
	bool		sweeper_seen = false;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (WorkflowShmem == NULL || workflow_database == NULL)
		return (Datum) 0;
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL || !workflow_database_listed(dbname))
		return (Datum) 0;

	SpinLockAcquire(&WorkflowShmem->mutex);
	launcher_running = WorkflowShmem->launcher != NULL;
	SpinLockRelease(&WorkflowShmem->mutex);

	for (i = WF_FIRST_RUNNER_SLOT; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
		bool		sweeper = WF_IS_SWEEPER_SLOT(i);
		pid_t		pid;
		Oid			dboid;
		TimestampTz started_at;
		bool		start_failed;
		char		id[NAMEDATALEN];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		if (!sweeper && i > workflow_runners && WorkflowShmem->slots[i].pid == 0)
			continue;
		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = s->pid;
		dboid = s->dboid;
		started_at = s->started_at;
		start_failed = s->start_failed;
		SpinLockRelease(&WorkflowShmem->mutex);

		if (sweeper)
			strlcpy(id, "sweeper", sizeof(id));
		else
			workflow_runner_id(i, id, sizeof(id));
		values[0] = CStringGetTextDatum(id);
		values[1] = CStringGetTextDatum(sweeper ? "sweeper" : "runner");

		if (pid != 0 && dboid == MyDatabaseId)
		{
			values[2] = Int32GetDatum((int32) pid);
			values[3] = TimestampTzGetDatum(started_at);
			nulls[4] = true;
			sweeper_seen |= sweeper;
		}
		else if (pid == 0 && !sweeper && launcher_running && start_failed)
		{
			nulls[2] = nulls[3] = true;
			values[4] = CStringGetTextDatum(psprintf("not started: no background worker slot free; raise max_worker_processes (now %d) or lower workflow.runners",
													 max_worker_processes));
		}
		else
			continue;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (!launcher_running && !sweeper_seen)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, true, true, false};

		values[0] = CStringGetTextDatum("sweeper");
		values[1] = CStringGetTextDatum("sweeper");
		values[4] = CStringGetTextDatum("not started: the workflow launcher is not running");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
