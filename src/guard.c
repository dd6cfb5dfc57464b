/*-------------------------------------------------------------------------
 *
 * guard.c
 *		The lease guard of a job a runner claimed: whether the job's row
 *		still says it runs under the lease of that claim, and, after a task
 *		succeeded, the lock of that row until the batch commits.
 *
 * A runner asks this for every task: before the body, whether the job is
 * still its own (when it was claimed a while ago), and after a successful
 * body, in the task's subtransaction, with the row then locked.  Both mean
 *
 *		SELECT 1 FROM workflow.jobs
 *		 WHERE id = $1 AND lease = $2 AND execution = 'running'
 *		[FOR NO KEY UPDATE]
 *
 * under a fresh snapshot, as in READ COMMITTED.  Through SPI, such a
 * statement costs a plan revalidation and an executor start-up and
 * shutdown, several times what the probe itself costs; so this reads the
 * row directly, and locks it with table_tuple_lock(), which is what the
 * executor's LockRows node calls.  A row updated after the snapshot is
 * locked in its latest version, which is then checked again (the
 * EvalPlanQual recheck of a locking SELECT); a version that fails the check
 * stays locked, as it would there.  A lock held by another transaction is
 * waited for, within the runner's lock_timeout.
 *
 * After a task succeeded, the row is locked by the task's subtransaction
 * only when another transaction holds or changes it (then the wait, and
 * its timeout, are that job's alone).  Otherwise the runner locks it just
 * after that subtransaction ends, in the batch's transaction
 * (workflow_job_lock): the batch's record then updates a row its own
 * transaction locked, where a lock of the subtransaction would make the
 * row's xmax a MultiXact.  A lock another transaction took in between is
 * waited for: another runner's claim that still saw the job queued locks
 * the row until it commits (test/t/280_claim_contention.pl).  A
 * transaction that changed the row in between, or a wait past the
 * batch's lock_timeout, makes that an error of the batch, which is handed
 * back and run again.
 *
 * The row is read at the address of the version the claim made, when the
 * runner has it: a job nothing changed since its claim is there, and the
 * primary key's index, which holds an entry for every version of the row
 * that was not a HOT update, is not read.  When that version is no longer
 * the visible one (the job moved on, or something changed it), or the
 * address holds another row since (VACUUM), the index is read.
 *
 * The relation, index, column numbers and the label's OID are looked up
 * once per top-level transaction (the runner's batch), so a dropped and
 * recreated extension is followed.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/multixact.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_enum.h"
#include "executor/tuptable.h"
#include "storage/bufmgr.h"
#include "storage/procarray.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "workflow.h"

/* what the guard reads, valid for the top-level transaction `lxid' */
typedef struct GuardRelation
{
	LocalTransactionId lxid;
	Oid			jobs;			/* workflow.jobs */
	Oid			pkey;			/* its primary key's index, on id */
	AttrNumber	id;
	AttrNumber	lease;
	AttrNumber	execution;
	Oid			running;		/* the label 'running' of workflow.execution */
} GuardRelation;

static GuardRelation guard = {InvalidLocalTransactionId};

static void guard_lookup(void);
static bool fetch_at(Relation rel, Snapshot snapshot, ItemPointer hint, int64 job_id,
					 TupleTableSlot *slot);
static bool fetch_by_id(Relation rel, Snapshot snapshot, int64 job_id, TupleTableSlot *slot);
static bool row_is_ours(TupleTableSlot *slot, int64 lease);
static bool row_is_free(TupleTableSlot *slot);

/*
 * Whether job `job_id' is still running under `lease', read with a fresh
 * snapshot, first at `hint' (the address of a version of its row, or NULL
 * or invalid).  With WF_GUARD_LOCK_IF_HELD, when another transaction
 * holds a lock on its row or changes it, the row is locked FOR NO KEY
 * UPDATE by the current (sub)transaction, waiting within lock_timeout, and
 * the answer is about the version locked.  *locked (when not NULL) tells
 * whether the row was locked, and *found (when not NULL) where the version
 * read or locked is.
 */
bool
workflow_job_is_ours(int64 job_id, int64 lease, ItemPointer hint, WorkflowGuardLock lock,
					 bool *locked, ItemPointer found)
{
	Relation	rel;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	bool		ours = false;

	if (locked != NULL)
		*locked = false;
	guard_lookup();
	/* what this transaction did so far is seen, as by a new statement */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	rel = table_open(guard.jobs, lock != WF_GUARD_READ ? RowShareLock : AccessShareLock);
	slot = table_slot_create(rel, NULL);

	if (fetch_at(rel, snapshot, hint, job_id, slot) ||
		fetch_by_id(rel, snapshot, job_id, slot))
	{
		ours = row_is_ours(slot, lease);
		if (ours && lock == WF_GUARD_LOCK_IF_HELD && !row_is_free(slot))
		{
			TM_FailureData tmfd;
			TM_Result	result;

			result = table_tuple_lock(rel, &slot->tts_tid, snapshot, slot,
									  GetCurrentCommandId(true), LockTupleNoKeyExclusive,
									  LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
									  &tmfd);
			switch (result)
			{
				case TM_Ok:
					/* the slot holds the version locked, maybe a newer one */
					ours = row_is_ours(slot, lease);
					if (locked != NULL)
						*locked = true;
					break;
				case TM_Deleted:
					ours = false;
					break;
				default:
					/* nothing else is possible when waiting for the latest version */
					elog(ERROR, "unexpected result %d locking job %lld",
						 (int) result, (long long) job_id);
			}
		}
	}
	if (ours && found != NULL)
		ItemPointerCopy(&slot->tts_tid, found);
	ExecDropSingleTupleTableSlot(slot);
	/* the table's lock is kept until the end of the transaction */
	table_close(rel, NoLock);
	UnregisterSnapshot(snapshot);
	return ours;
}

/*
 * Lock, in the current transaction, the row of job `job_id' that
 * workflow_job_is_ours() found running under `lease' and free, at `tid',
 * in a subtransaction that has ended since.  The row is not locked while
 * the task runs, and another transaction may have locked it meanwhile:
 * most often a claim whose snapshot still saw the job queued, which locks
 * the row's latest version before its recheck finds it running, and keeps
 * that lock until it commits, a millisecond later.  Such a lock is waited
 * for, within the batch's lock_timeout.  An error when the row is no
 * longer the job running under `lease' (another transaction changed it in
 * between) or the wait times out: the task's effects are part of this
 * transaction already, so only the whole transaction can be undone.
 */
void
workflow_job_lock(int64 job_id, int64 lease, ItemPointer tid)
{
	Relation	rel;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	bool		ours = false;

	guard_lookup();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	/* locked by the subtransaction already: VACUUM cannot truncate it */
	rel = table_open(guard.jobs, RowShareLock);
	slot = table_slot_create(rel, NULL);
	/* the fetch pins the page: no pruning moves the tuple meanwhile */
	if (fetch_at(rel, snapshot, tid, job_id, slot))
	{
		TM_FailureData tmfd;

		ours = table_tuple_lock(rel, &slot->tts_tid, snapshot, slot,
								GetCurrentCommandId(true), LockTupleNoKeyExclusive,
								LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								&tmfd) == TM_Ok &&
			row_is_ours(slot, lease);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	UnregisterSnapshot(snapshot);
	if (!ours)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("job %lld changed while its task's success was being recorded",
						(long long) job_id),
				 errdetail("The runner's batch is handed back and runs again.")));
}

/*
 * Whether no other transaction holds a lock on the row version in `slot'
 * (a buffer tuple, pinned) or is changing it, nor changed it since the
 * snapshot it was read with.  Read under the buffer's share lock; a
 * locker that comes just after is seen by workflow_job_lock().
 */
static bool
row_is_free(TupleTableSlot *slot)
{
	BufferHeapTupleTableSlot *bslot = (BufferHeapTupleTableSlot *) slot;
	uint16		infomask;
	TransactionId xmax;

	Assert(TTS_IS_BUFFERTUPLE(slot));
	LockBuffer(bslot->buffer, BUFFER_LOCK_SHARE);
	infomask = bslot->base.tuple->t_data->t_infomask;
	xmax = HeapTupleHeaderGetRawXmax(bslot->base.tuple->t_data);
	LockBuffer(bslot->buffer, BUFFER_LOCK_UNLOCK);

	if (infomask & HEAP_XMAX_INVALID)
		return true;
	if (infomask & HEAP_XMAX_IS_MULTI)
		return !MultiXactIdIsRunning(xmax, HEAP_XMAX_IS_LOCKED_ONLY(infomask));
	/* a lock of this transaction's own (the task's SQL) */
	if (TransactionIdIsCurrentTransactionId(xmax))
		return HEAP_XMAX_IS_LOCKED_ONLY(infomask);
	if (TransactionIdIsInProgress(xmax))
		return false;
	/* an updater that committed after the snapshot made a newer version */
	return HEAP_XMAX_IS_LOCKED_ONLY(infomask) || !TransactionIdDidCommit(xmax);
}

/*
 * Fetch into `slot' the version of job `job_id' at address `hint', if it
 * is there and visible to `snapshot'.
 */
static bool
fetch_at(Relation rel, Snapshot snapshot, ItemPointer hint, int64 job_id,
		 TupleTableSlot *slot)
{
	bool		isnull;
	Datum		id;

	if (hint == NULL || !ItemPointerIsValid(hint))
		return false;
	/* a page VACUUM truncated away is not read */
	if (ItemPointerGetBlockNumber(hint) >= RelationGetNumberOfBlocks(rel))
		return false;
	/* checks that the line pointer holds a tuple, and its visibility */
	if (!table_tuple_fetch_row_version(rel, hint, snapshot, slot))
		return false;
	/* the address may hold another row since */
	id = slot_getattr(slot, guard.id, &isnull);
	return !isnull && DatumGetInt64(id) == job_id;
}

/*
 * Fetch into `slot' the version of job `job_id' visible to `snapshot',
 * through the primary key's index.
 */
static bool
fetch_by_id(Relation rel, Snapshot snapshot, int64 job_id, TupleTableSlot *slot)
{
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;

	index = index_open(guard.pkey, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(job_id));
	scan = WF_INDEX_BEGINSCAN(rel, index, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	/* the slot keeps its own pin of the tuple's buffer */
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * Whether the row in `slot' runs under `lease'.
 */
static bool
row_is_ours(TupleTableSlot *slot, int64 lease)
{
	Datum		value;
	bool		isnull;

	value = slot_getattr(slot, guard.lease, &isnull);
	if (isnull || DatumGetInt64(value) != lease)
		return false;
	value = slot_getattr(slot, guard.execution, &isnull);
	return !isnull && DatumGetObjectId(value) == guard.running;
}

/*
 * Look up what the guard reads, once per top-level transaction.
 */
static void
guard_lookup(void)
{
	Oid			nsp;
	HeapTuple	tuple;

	if (guard.lxid == WF_MY_LXID && guard.lxid != InvalidLocalTransactionId)
		return;

	nsp = get_namespace_oid("workflow", false);
	guard.jobs = get_relname_relid("jobs", nsp);
	guard.pkey = get_relname_relid("jobs_pkey", nsp);
	if (!OidIsValid(guard.jobs) || !OidIsValid(guard.pkey))
		elog(ERROR, "workflow.jobs or its primary key is missing");
	guard.id = get_attnum(guard.jobs, "id");
	guard.lease = get_attnum(guard.jobs, "lease");
	guard.execution = get_attnum(guard.jobs, "execution");
	if (guard.id == InvalidAttrNumber || guard.lease == InvalidAttrNumber ||
		guard.execution == InvalidAttrNumber)
		elog(ERROR, "workflow.jobs has no column id, lease or execution");
	tuple = SearchSysCache2(ENUMTYPOIDNAME,
							ObjectIdGetDatum(get_atttype(guard.jobs, guard.execution)),
							CStringGetDatum("running"));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "workflow.execution has no label \"running\"");
	guard.running = ((Form_pg_enum) GETSTRUCT(tuple))->oid;
	ReleaseSysCache(tuple);
	guard.lxid = WF_MY_LXID;
}
