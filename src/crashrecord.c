/*-------------------------------------------------------------------------
 *
 * crashrecord.c
 *		What the runners were executing when the server crashed.
 *
 * A runner claims a batch of jobs in a transaction of its own, committed
 * without waiting for its WAL flush, then runs their tasks one after the
 * other in one more transaction, committed synchronously (which flushes
 * the claim too: no task's effect is ever durable without its claim).  A
 * crash (any backend killed, a PANIC) rolls that transaction back: of the
 * jobs of the batch, one was executing its task, perhaps the cause of the
 * crash, and the others never started or had their effects undone.  The
 * claim may have been lost too, and the jobs found queued again.  The
 * database cannot tell these cases apart afterwards.  So each runner notes,
 * before a task's body starts, the job, lease and task it executes, in a
 * file of the data directory ("workflow.running", one fixed-size record per
 * worker slot, written in place without fsync, which a crash of the server
 * does not lose, cleared when the batch ends), and at every start of the
 * server (including the restart after a crash) the records are loaded into
 * shared memory and the file is emptied, before any runner starts.
 *
 * A loaded record holds its job until the sweeper of its database has
 * settled it (workflow._sweep_crashed): the job, running under the runner
 * that is gone or queued again at the same task because its claim was
 * lost, gets a failed run and its workflow's on_stale policy; a crash loop
 * ends at the third crash in the same task.  Until then runners do not
 * claim it (workflow._crash_held() in workflow._runner_claim), so a task
 * that crashes the server is never run again uncounted.  The other jobs of
 * the batch are handed back by the stale-job path, no attempt counted.  A
 * record lost with the operating system (no fsync) only means that the job
 * that was executing is handed back too, or, its claim lost as well, simply
 * queued.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_crash_held);
PG_FUNCTION_INFO_V1(workflow_crash_records);
PG_FUNCTION_INFO_V1(workflow_crash_settled);

/* the file, in the data directory */
#define CRASH_RECORD_FILE "workflow.running"

/* this runner's open file, and its slot */
static int	record_fd = -1;
static int	record_slot = -1;

/*
 * Records settled by this transaction, cleared in shared memory when it
 * commits: the job and the subtransaction that settled it (an entry goes
 * with its subtransaction when that rolls back).  In TopTransactionContext.
 */
typedef struct SettledRecord
{
	int64		job_id;
	SubTransactionId subid;
} SettledRecord;

static List *settled_records = NIL;
static bool settle_callbacks_registered = false;

static void settle_at_commit(XactEvent event, void *arg);
static void settle_at_subcommit(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);

/*
 * Load the records the runners of the previous server run left, into
 * `records' (WF_NUM_SLOTS entries, zeroed first), and empty the file.  Runs
 * in the postmaster when the shared memory is created, before any runner
 * starts; a file that cannot be read is reported and ignored, and so is a
 * record not of this layout (a file an older build wrote) or naming no
 * job or task.  Returns how many records name a job.
 */
uint32
workflow_crash_records_load(WorkflowCrashRecord *records)
{
	int			fd;
	ssize_t		got;
	uint32		n = 0;

	memset(records, 0, sizeof(WorkflowCrashRecord) * WF_NUM_SLOTS);
	fd = OpenTransientFile(CRASH_RECORD_FILE, O_RDWR | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", CRASH_RECORD_FILE)));
		return 0;
	}
	got = read(fd, records, sizeof(WorkflowCrashRecord) * WF_NUM_SLOTS);
	if (got < 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", CRASH_RECORD_FILE)));
		got = 0;
	}
	/* a short file: the slots past its end recorded nothing */
	if (got < (ssize_t) (sizeof(WorkflowCrashRecord) * WF_NUM_SLOTS))
		memset((char *) records + got, 0,
			   sizeof(WorkflowCrashRecord) * WF_NUM_SLOTS - got);
	if (ftruncate(fd, 0) != 0)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not truncate file \"%s\": %m", CRASH_RECORD_FILE)));
	CloseTransientFile(fd);

	for (int i = 0; i < WF_NUM_SLOTS; i++)
	{
		if (records[i].magic != WF_CRASH_RECORD_MAGIC || records[i].job_id <= 0 ||
			!OidIsValid(records[i].dboid) ||
			records[i].phase < 0 || records[i].phase >= WF_NUM_PHASES)
			memset(&records[i], 0, sizeof(WorkflowCrashRecord));
		else
			n++;
	}
	return n;
}

/*
 * Note, for the runner of `slot', the task it is about to run (job_id,
 * lease, phase, step, attempt and task_attempt of `what'), or with NULL
 * that none runs.  A failure to write is logged once and otherwise
 * ignored: the record only refines what happens after a crash.
 */
void
workflow_crash_record_note(int slot, const WorkflowCrashRecord *what)
{
	static bool write_failure_logged = false;
	WorkflowCrashRecord record;

	if (record_fd < 0 || record_slot != slot)
	{
		if (record_fd >= 0)
			close(record_fd);
		record_fd = BasicOpenFile(CRASH_RECORD_FILE, O_RDWR | O_CREAT | PG_BINARY);
		record_slot = slot;
		if (record_fd < 0)
		{
			if (!write_failure_logged)
				ereport(LOG,
						(errcode_for_file_access(),
						 errmsg("could not open file \"%s\": %m", CRASH_RECORD_FILE)));
			write_failure_logged = true;
			return;
		}
	}
	memset(&record, 0, sizeof(record));
	if (what != NULL)
	{
		record.magic = WF_CRASH_RECORD_MAGIC;
		record.dboid = MyDatabaseId;
		record.job_id = what->job_id;
		record.lease = what->lease;
		record.started_at = GetCurrentTimestamp();
		record.phase = what->phase;
		record.step = what->step;
		record.attempt = what->attempt;
		record.task_attempt = what->task_attempt;
	}
	if (pwrite(record_fd, &record, sizeof(record), (off_t) slot * sizeof(record)) !=
		(ssize_t) sizeof(record) && !write_failure_logged)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", CRASH_RECORD_FILE)));
		write_failure_logged = true;
	}
}

/*
 * workflow._crash_held() returns bigint[]: the jobs of this database that
 * crash records name and the sweeper has not settled yet; runners do not
 * claim them.  Without records (the rule) an empty array, without taking
 * the lock.
 */
Datum
workflow_crash_held(PG_FUNCTION_ARGS)
{
	Datum		ids[WF_NUM_SLOTS];
	int			n = 0;

	workflow_require_shmem();
	if (pg_atomic_read_u32(&WorkflowShmem->unsettled) > 0)
	{
		SpinLockAcquire(&WorkflowShmem->mutex);
		for (int i = 0; i < WF_NUM_SLOTS; i++)
		{
			WorkflowCrashRecord *record = &WorkflowShmem->interrupted[i];

			if (record->job_id != 0 && record->dboid == MyDatabaseId)
				ids[n++] = Int64GetDatum(record->job_id);
		}
		SpinLockRelease(&WorkflowShmem->mutex);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, sizeof(int64),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * workflow._crash_records() returns the unsettled crash records of this
 * database: job_id, lease, runner_id (of the slot that noted it),
 * started_at, phase, step, attempt and task_attempt.
 */
Datum
workflow_crash_records(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkflowCrashRecord records[WF_NUM_SLOTS];

	workflow_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	if (pg_atomic_read_u32(&WorkflowShmem->unsettled) == 0)
		return (Datum) 0;
	SpinLockAcquire(&WorkflowShmem->mutex);
	memcpy(records, WorkflowShmem->interrupted, sizeof(records));
	SpinLockRelease(&WorkflowShmem->mutex);

	for (int i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowCrashRecord *record = &records[i];
		char		runner_id[NAMEDATALEN];
		Datum		values[8];
		bool		nulls[8] = {false};

		if (record->job_id == 0 || record->dboid != MyDatabaseId)
			continue;
		workflow_runner_id(i, runner_id, sizeof(runner_id));
		values[0] = Int64GetDatum(record->job_id);
		values[1] = Int64GetDatum(record->lease);
		values[2] = CStringGetTextDatum(runner_id);
		values[3] = TimestampTzGetDatum(record->started_at);
		values[4] = CStringGetTextDatum(WorkflowPhaseNames[record->phase]);
		values[5] = Int32GetDatum(record->step);
		values[6] = Int32GetDatum(record->attempt);
		values[7] = Int32GetDatum(record->task_attempt);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * workflow._crash_settled(job_id bigint) returns void: the crash record of
 * that job (in this database) is settled once this transaction commits,
 * unless the subtransaction that calls this rolls back.
 */
Datum
workflow_crash_settled(PG_FUNCTION_ARGS)
{
	SettledRecord *entry;
	MemoryContext old;

	workflow_require_shmem();
	if (!settle_callbacks_registered)
	{
		RegisterXactCallback(settle_at_commit, NULL);
		RegisterSubXactCallback(settle_at_subcommit, NULL);
		settle_callbacks_registered = true;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	entry = palloc(sizeof(SettledRecord));
	entry->job_id = PG_GETARG_INT64(0);
	entry->subid = GetCurrentSubTransactionId();
	settled_records = lappend(settled_records, entry);
	MemoryContextSwitchTo(old);
	PG_RETURN_VOID();
}

/*
 * At the commit of a transaction that settled records, clear them in
 * shared memory; at its end either way, forget them (they were in
 * TopTransactionContext).
 */
static void
settle_at_commit(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (settled_records == NIL)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		SpinLockAcquire(&WorkflowShmem->mutex);
		foreach(lc, settled_records)
		{
			SettledRecord *entry = (SettledRecord *) lfirst(lc);

			for (int i = 0; i < WF_NUM_SLOTS; i++)
			{
				WorkflowCrashRecord *record = &WorkflowShmem->interrupted[i];

				if (record->job_id == entry->job_id && record->dboid == MyDatabaseId)
				{
					memset(record, 0, sizeof(WorkflowCrashRecord));
					pg_atomic_fetch_sub_u32(&WorkflowShmem->unsettled, 1);
				}
			}
		}
		SpinLockRelease(&WorkflowShmem->mutex);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		settled_records = NIL;
}

/*
 * A subtransaction's settled records become its parent's when it commits,
 * and are forgotten when it rolls back.
 */
static void
settle_at_subcommit(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	foreach(lc, settled_records)
	{
		SettledRecord *entry = (SettledRecord *) lfirst(lc);

		if (entry->subid != mySubid)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			entry->subid = parentSubid;
		else if (event == SUBXACT_EVENT_ABORT_SUB)
			settled_records = foreach_delete_current(settled_records, lc);
	}
}
