/*-------------------------------------------------------------------------
 *
 * crashrecord.c
 *		What the runners were executing when the server crashed.
 *
 * A runner claims a batch of jobs in a transaction of its own, then runs
 * their tasks one after the other in one more transaction.  A crash (any
 * backend killed, a PANIC) rolls that transaction back: of the jobs of
 * the batch, one was executing its task, perhaps the cause of the crash,
 * and the others never started or had their effects undone.  The database
 * cannot tell them apart afterwards: all are `running' under a runner that
 * is gone.  So each runner notes, before a task's body starts, the job and
 * lease it executes, in a file of the data directory ("workflow.running",
 * one fixed-size record per worker slot, written in place without fsync,
 * cleared when the batch ends), and at every start of the server
 * (including the restart after a crash) the records are loaded into shared
 * memory and the file is emptied, before any runner starts.
 *
 * The sweeper then treats a stale job of an in-server runner by what the
 * record says (workflow._sweep_stale): the job whose task was executing
 * (workflow._interrupted_by_crash) gets a failed run and its workflow's
 * on_stale policy, as before; the other jobs of the batch are handed back
 * to the queue, no attempt counted.  A record lost with the operating
 * system (no fsync) only means that the job that was executing is handed
 * back too.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"

#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_interrupted_by_crash);

/* the file, in the data directory */
#define CRASH_RECORD_FILE "workflow.running"

/* this runner's open file, and its slot */
static int	record_fd = -1;
static int	record_slot = -1;

/*
 * Load the records the runners of the previous server run left, into
 * `records' (WF_NUM_SLOTS entries, zeroed first), and empty the file.  Runs
 * in the postmaster when the shared memory is created, before any runner
 * starts; a file that cannot be read is reported and ignored.
 */
void
workflow_crash_records_load(WorkflowCrashRecord *records)
{
	int			fd;
	ssize_t		got;

	memset(records, 0, sizeof(WorkflowCrashRecord) * WF_NUM_SLOTS);
	fd = OpenTransientFile(CRASH_RECORD_FILE, O_RDWR | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", CRASH_RECORD_FILE)));
		return;
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
}

/*
 * Note, for the runner of `slot', the job whose task is about to run (or,
 * with job_id 0, that none runs).  A failure to write is logged once and
 * otherwise ignored: the record only refines what happens after a crash.
 */
void
workflow_crash_record_note(int slot, int64 job_id, int64 lease)
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
	record.job_id = job_id;
	record.lease = lease;
	record.dboid = job_id != 0 ? MyDatabaseId : InvalidOid;
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
 * workflow._interrupted_by_crash(job_id bigint, lease bigint) returns
 * boolean: whether a runner was executing the task of that job, under that
 * lease, in this database when the server last crashed.
 */
Datum
workflow_interrupted_by_crash(PG_FUNCTION_ARGS)
{
	int64		job_id = PG_GETARG_INT64(0);
	int64		lease = PG_GETARG_INT64(1);

	workflow_require_shmem();
	for (int i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowCrashRecord *record = &WorkflowShmem->interrupted[i];

		if (record->job_id == job_id && record->lease == lease &&
			record->dboid == MyDatabaseId && job_id != 0)
			PG_RETURN_BOOL(true);
	}
	PG_RETURN_BOOL(false);
}
