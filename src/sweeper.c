/*-------------------------------------------------------------------------
 *
 * sweeper.c
 *		The sweeper background worker, one per served database: every
 *		workflow.activity_interval it writes the heartbeats of the database's
 *		in-server workers (from shared memory, so a runner busy with a long
 *		task never looks dead), ends elapsed wait timers, enforces job
 *		timeouts, applies the on_stale policy to the jobs of runners that
 *		stopped reporting and whose process is gone, prunes succeeded jobs
 *		older than workflow.retention and failed or canceled ones older than
 *		workflow.failed_retention, and counts the jobs waiting for a
 *		runner for the launcher; and it removes the rows of external runners
 *		not heard from for workflow.runner_retention that hold no running
 *		job.
 *
 * It is also the launcher's probe: started in a database, it finds out
 * whether the extension is there.  If it is, the database is served (the
 * entry of src/databases.c says so) and the sweeper stays; if not (or not
 * any more, after DROP EXTENSION), it says so and exits, and the launcher
 * forgets the database until the extension is created there.
 *
 * With workflow.enabled = off it only writes heartbeats: a paused system
 * neither runs nor cancels anything.
 *
 * The work itself is SQL (workflow._sweep, which calls _sweep_crashed,
 * _sweep_timers, _sweep_timeouts, _sweep_stale and _sweep_retention) in small batches
 * with SKIP LOCKED, so the sweeper never blocks the queue nor waits for a
 * session that holds a job; when a batch was full it goes on at once
 * instead of waiting for the next period.  The external runners are
 * pruned by workflow._sweep_runners, in the same transaction after _sweep.
 * _sweep returns a jsonb object:
 * how many items each section took on ("crashed", "timers", "timeouts",
 * "stale", "pruned") and the ids of the jobs that failed ("failed", absent when
 * none); sweep_once() reads these keys by name.
 *
 * Faults.  _sweep handles every item (a timer, a timeout, a stale job, a
 * job to prune) in a subtransaction of its own: an item that fails is
 * logged with its job id and does not stop the others.  It returns the ids
 * of the jobs that failed; the sweeper leaves them out of its passes for a
 * while (10 s, doubling at every new failure up to an hour), so that a job
 * that always fails is neither retried at every pass nor, being first in
 * the batch's order, keeps the jobs behind it from being handled.
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
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "workflow.h"

#define SWEEP_BATCH 500

/* how long a job whose handling failed is left out of the passes */
#define SWEEP_RETRY_FIRST_MS 10000
#define SWEEP_RETRY_MAX_MS (3600 * 1000)
/* at most this many such jobs are remembered */
#define SWEEP_MAX_FAILED 5000

/* a job whose handling failed: left out of the passes until retry_at */
typedef struct SweepFailure
{
	int64		job_id;			/* hash key */
	TimestampTz retry_at;
	int			failures;		/* in a row */
} SweepFailure;

static Oid	registered_extension = InvalidOid;
static HTAB *failed_jobs = NULL;

/* this sweeper's entry in the table of served databases */
static int	my_entry = -1;
/* the entry says the database is served (the extension was found) */
static bool served = false;

static bool sweep_once(bool *present);
static void database_found(WorkflowDatabase *e, bool present, uint32 pokes);
static void count_queued(WorkflowDatabase *e);
static bool prune_runners(void);
static void heartbeat(void);
static Datum skip_list(void);
static void remember_failures(Datum failed);

/*
 * Entry point of the sweeper of one database: bgw_main_arg is its slot,
 * WF_SWEEPER_SLOT(entry) for its database's entry in the table of
 * src/databases.c, bgw_extra the database's OID.
 */
void
workflow_sweeper_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	Oid			dboid;
	MemoryContext loop_context;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!WF_IS_SWEEPER_SLOT(slot))
		elog(FATAL, "workflow sweeper started with invalid slot %d", slot);
	(void) workflow_worker_attach(slot, dboid);
	my_entry = slot - WF_SWEEPER_SLOT(0);
	workflow_worker_connect(dboid);
	pgstat_report_appname("workflow sweeper");

	loop_context = AllocSetContextCreate(TopMemoryContext, "workflow sweeper",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		more;
		bool		present;
		uint32		pokes;
		WorkflowDatabase *e = workflow_database_entry(my_entry, MyDatabaseId);

		/* the launcher forgot the database: nothing to do here any more */
		if (e == NULL)
			proc_exit(0);

		CHECK_FOR_INTERRUPTS();
		workflow_worker_reload_if_needed();
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		ResetLatch(MyLatch);

		/* read before looking: a CREATE EXTENSION committed later pokes */
		pokes = pg_atomic_read_u32(&e->pokes);
		pg_memory_barrier();

		pgstat_report_activity(STATE_RUNNING, "workflow sweep");
		more = sweep_once(&present);
		pgstat_report_activity(STATE_IDLE, NULL);

		if (!present)
		{
			/* no extension (or not any more): the launcher forgets us */
			database_found(e, false, pokes);
			proc_exit(0);
		}
		database_found(e, true, pokes);

		if (!more)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 workflow_activity_interval, PG_WAIT_EXTENSION);
	}
}

/*
 * Tell the launcher, through the database's entry, whether the extension is
 * there: the first time it is (the database is served), or that it is not
 * (when `pokes' pokes had been counted: one more since means someone has
 * just created it, and the launcher starts the sweeper again).
 */
static void
database_found(WorkflowDatabase *e, bool present, uint32 pokes)
{
	bool		changed = false;

	if (present && served)
		return;
	LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
	if (e->dboid == MyDatabaseId)
	{
		if (present)
			e->served = true;
		else
		{
			e->absent = true;
			e->absent_pokes = pokes;
			pg_atomic_write_u32(&e->queued, 0);
		}
		changed = true;
	}
	LWLockRelease(WorkflowShmem->lock);
	served = present;
	if (changed)
		workflow_poke_launcher();
}

/*
 * Count the runnable jobs of the runners' queue (at most WF_QUEUED_CAP) for
 * the launcher, which sends a runner to a database where jobs wait and no
 * runner of it is idle, and poke it when that is the case now.
 */
static void
count_queued(WorkflowDatabase *e)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int64		n;
	int			i;

	if (plan == NULL)
		workflow_keep_plan(&plan,
						   "SELECT pg_catalog.count(*) FROM (SELECT 1 FROM workflow.jobs "
						   "WHERE execution = 'queued' AND task_type IS NULL AND run_at <= pg_catalog.now() "
						   "LIMIT " CppAsString2(WF_QUEUED_CAP) ") q", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "workflow sweeper could not count the queued jobs");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	pg_atomic_write_u32(&e->queued, (uint32) n);
	if (n == 0)
		return;

	for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS; i++)
	{
		WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
		bool		idle_runner;

		SpinLockAcquire(&WorkflowShmem->mutex);
		idle_runner = s->pid != 0 && s->dboid == MyDatabaseId && s->idle;
		SpinLockRelease(&WorkflowShmem->mutex);
		if (idle_runner)
			return;
	}
	workflow_poke_launcher();
}

/*
 * One pass in one transaction.  Returns true when a batch was full and the
 * sweeper should go on at once; *present is false when the extension does
 * not exist in the database (nothing was done).
 */
static bool
sweep_once(bool *present)
{
	Oid			extoid;
	Oid			argtypes[5] = {TEXTOID, INTERVALOID, INT4OID, INT8ARRAYOID, INTERVALOID};
	Datum		values[5];
	Interval   *retention;
	Interval   *failed_retention;
	bool		more = false;
	WorkflowDatabase *e;

	workflow_begin_spi();
	extoid = workflow_extension_ready();
	*present = OidIsValid(extoid);
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
			elog(ERROR, "workflow sweeper could not register itself");
		registered_extension = extoid;
		/* job ids of another incarnation of the extension mean nothing */
		if (failed_jobs != NULL)
		{
			hash_destroy(failed_jobs);
			failed_jobs = NULL;
		}
	}

	heartbeat();
	e = workflow_database_entry(my_entry, MyDatabaseId);
	if (e != NULL)
		count_queued(e);

	/* workflow.enabled = off pauses the sweeper's changes to jobs too */
	if (!workflow_enabled)
	{
		workflow_end_spi(true);
		return false;
	}

	retention = palloc0(sizeof(Interval));
	retention->time = (int64) workflow_retention * USECS_PER_SEC;
	failed_retention = palloc0(sizeof(Interval));
	failed_retention->time = (int64) workflow_failed_retention * USECS_PER_SEC;
	values[0] = CStringGetTextDatum(workflow_stale_job_action == WF_STALE_RETRY ?
									"retry" : "cancel");
	values[1] = IntervalPGetDatum(retention);
	values[2] = Int32GetDatum(SWEEP_BATCH);
	values[3] = skip_list();
	values[4] = IntervalPGetDatum(failed_retention);
	/* the keys of _sweep's result, read by name */
	if (SPI_execute_with_args("SELECT s.* FROM pg_catalog.jsonb_to_record(workflow._sweep($1, $2, $3, $4, $5)) "
							  "AS s(crashed integer, timers integer, timeouts integer, stale integer, "
							  "pruned integer, failed bigint[])",
							  5, argtypes, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "workflow sweeper could not sweep");
	else
	{
		static const char *const sections[] = {"crashed", "timers", "timeouts", "stale", "pruned"};
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		value;
		int			i;

		/* a section that took on a whole batch has more to do */
		for (i = 0; i < (int) lengthof(sections); i++)
		{
			value = SPI_getbinval(row, desc, SPI_fnumber(desc, sections[i]), &isnull);
			if (!isnull && DatumGetInt32(value) >= SWEEP_BATCH)
				more = true;
		}
		value = SPI_getbinval(row, desc, SPI_fnumber(desc, "failed"), &isnull);
		if (!isnull)
			remember_failures(value);
	}

	if (prune_runners())
		more = true;

	workflow_end_spi(true);
	return more;
}

/*
 * Remove the rows of external runners not heard from for longer than
 * workflow.runner_retention that hold no running job (none when it is 0),
 * a batch at a time.  Returns true when the batch was full.
 */
static bool
prune_runners(void)
{
	Oid			argtypes[2] = {INTERVALOID, INT4OID};
	Datum		values[2];
	Interval   *retention;
	bool		isnull;
	Datum		pruned;

	retention = palloc0(sizeof(Interval));
	retention->time = (int64) workflow_runner_retention * USECS_PER_SEC;
	values[0] = IntervalPGetDatum(retention);
	values[1] = Int32GetDatum(SWEEP_BATCH);
	if (SPI_execute_with_args("SELECT workflow._sweep_runners($1, $2)",
							  2, argtypes, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "workflow sweeper could not prune runners");
	pruned = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetInt32(pruned) >= SWEEP_BATCH;
}

/*
 * The ids of the jobs to leave out of this pass (an int8[] in the current
 * memory context): those whose handling failed recently.  Jobs whose time
 * out of the passes ended more than an hour ago without a new failure are
 * forgotten.
 */
static Datum
skip_list(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum	   *ids;
	int			n = 0;
	HASH_SEQ_STATUS status;
	SweepFailure *f;

	if (failed_jobs == NULL)
		return PointerGetDatum(construct_empty_array(INT8OID));

	ids = palloc(sizeof(Datum) * (hash_get_num_entries(failed_jobs) + 1));
	hash_seq_init(&status, failed_jobs);
	while ((f = (SweepFailure *) hash_seq_search(&status)) != NULL)
	{
		if (f->retry_at > now)
			ids[n++] = Int64GetDatum(f->job_id);
		else if (TimestampDifferenceExceeds(f->retry_at, now, SWEEP_RETRY_MAX_MS))
			(void) hash_search(failed_jobs, &f->job_id, HASH_REMOVE, NULL);
	}
	return PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Leave the jobs of `failed' (int8[]: those _sweep could not handle, each
 * already logged with its error) out of the next passes: 10 s after a first
 * failure, twice as long after every further one, at most an hour.
 */
static void
remember_failures(Datum failed)
{
	ArrayType  *arr = DatumGetArrayTypeP(failed);
	Datum	   *ids;
	bool	   *nulls;
	int			n;
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	deconstruct_array(arr, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &ids, &nulls, &n);
	if (n == 0)
		return;
	if (failed_jobs == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(SweepFailure);
		failed_jobs = hash_create("workflow sweeper failed jobs", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS);
	}
	for (i = 0; i < n; i++)
	{
		int64		job_id;
		SweepFailure *f;
		bool		found;
		int64		delay_ms;

		if (nulls[i])
			continue;
		job_id = DatumGetInt64(ids[i]);
		f = (SweepFailure *) hash_search(failed_jobs, &job_id, HASH_FIND, NULL);
		if (f == NULL)
		{
			if (hash_get_num_entries(failed_jobs) >= SWEEP_MAX_FAILED)
				continue;		/* tried again at the next pass */
			f = (SweepFailure *) hash_search(failed_jobs, &job_id, HASH_ENTER, &found);
			f->failures = 0;
		}
		f->failures = Min(f->failures + 1, 20);
		delay_ms = Min((int64) SWEEP_RETRY_FIRST_MS << (f->failures - 1),
					   (int64) SWEEP_RETRY_MAX_MS);
		f->retry_at = TimestampTzPlusMilliseconds(now, delay_ms);
		ereport(LOG,
				(errmsg("workflow sweeper will try job %lld again in %lld s",
						(long long) job_id, (long long) (delay_ms / 1000))));
	}
}

/*
 * Write the heartbeats of every live in-server worker of this database from
 * shared memory.  A runner that left for another database gets none here
 * any more: its row ages into an inactive runner (whose jobs it handed
 * back before leaving).
 */
static void
heartbeat(void)
{
	Datum		ids[WF_NUM_SLOTS];
	Datum		pids[WF_NUM_SLOTS];
	int			n = 0;
	int			i;
	Oid			argtypes[2] = {TEXTARRAYOID, INT4ARRAYOID};
	Datum		values[2];

	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
		pid_t		pid;
		char		id[NAMEDATALEN];

		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = s->dboid == MyDatabaseId ? s->pid : 0;
		SpinLockRelease(&WorkflowShmem->mutex);
		if (pid == 0)
			continue;
		if (WF_IS_SWEEPER_SLOT(i))
			strlcpy(id, "sweeper", sizeof(id));
		else
			workflow_runner_id(i, id, sizeof(id));
		ids[n] = CStringGetTextDatum(id);
		pids[n] = Int32GetDatum((int32) pid);
		n++;
	}

	values[0] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(pids, n, INT4OID, 4, true, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT workflow._in_server_heartbeat($1, $2)",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "workflow sweeper could not write heartbeats");
}
