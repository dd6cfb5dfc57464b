/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *		Wake-up at commit: a transaction that makes work runnable (a new
 *		job, a resumed or re-queued one, a completed task) sets the latch
 *		of a backend waiting for that kind of work as soon as it commits.
 *		The same commit callback interrupts the runner executing a job that
 *		the transaction canceled or timed out.
 *		No LISTEN/NOTIFY and no polling; workflow.run_interval is only a
 *		fallback (e.g. for COMMIT PREPARED, which runs no callback in the
 *		preparing backend).
 *
 * Protocol.  Shared memory holds one WorkflowWaiter per PGPROC.  A backend
 * about to sleep for work stores its database and the hash of its queue
 * (0 = the in-server runners' queue, otherwise the hash of an external
 * task type) and then sets `waiting'; it resets its latch, checks for
 * work, and only then sleeps, so a wake-up between its check and its sleep
 * is never lost.  A transaction that makes work runnable records (queue,
 * count) in TopTransactionContext; the XACT_EVENT_COMMIT callback, which
 * runs after the commit is visible to other snapshots, claims up to
 * `count' waiters of each queue of its database by an atomic exchange of
 * `waiting' and sets their latches.  When it finds fewer idle runners of
 * its database than it wanted, it pokes the launcher, which sends one
 * (src/databases.c, src/launcher.c).  The callback runs in post-commit
 * cleanup where an ERROR is not allowed, so it does nothing but atomics,
 * a lock, SetLatch and kill().  On abort the record is simply dropped.
 *
 * Interrupts.  cancel_job() (and the sweeper, for timeouts of SQL tasks)
 * records the job ids whose running SQL must stop, as many as it likes.
 * At commit the callback compares the job each worker slot executes with
 * them; for a match it stores the job id in the slot's `interrupt_job' and
 * sends the worker SIGINT, which cancels its current statement exactly like
 * pg_cancel_backend().  Doing it at commit means that the runner's own
 * guarded bookkeeping already sees the new state of the job and rolls the
 * task back.
 *
 * Subtransactions.  Every record carries the nesting level that made it: a
 * rolled-back subtransaction (ROLLBACK TO SAVEPOINT, an exception block)
 * takes its interrupts and wake-ups with it, so a cancel that was undone
 * never stops a task.  PREPARE TRANSACTION is refused while an interrupt
 * is pending; the wake-ups of a prepared transaction are dropped.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "compat.h"
#include "workflow.h"

#include <signal.h>

PG_FUNCTION_INFO_V1(workflow_wake_at_commit);
PG_FUNCTION_INFO_V1(workflow_interrupt_at_commit);

/*
 * What the current transaction will do at commit.  Both lists live in
 * TopTransactionContext, grow without a fixed limit, and are forgotten (not
 * freed: the context goes away) at the end of the transaction.  Every entry
 * remembers the subtransaction nesting level that added it, so that the
 * rollback of a subtransaction (ROLLBACK TO, an exception block) drops what
 * it added; the commit of a subtransaction hands its entries to the parent
 * level.  Entries are appended at the current level and the levels of the
 * entries never decrease along a list, so a subtransaction's entries are
 * always at the tail (the pendingActions of async.c work the same way).
 */
typedef struct PendingWake
{
	uint32		queue;
	int			count;
	int			nestlevel;
} PendingWake;

typedef struct PendingInterrupt
{
	int64		job_id;
	int			nestlevel;
} PendingInterrupt;

/* queues to wake when the current transaction commits */
static PendingWake *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;

/* jobs whose running SQL to interrupt when the transaction commits */
static PendingInterrupt *pending_interrupts = NULL;
static int	ninterrupts = 0;
static int	maxinterrupts = 0;

static bool callback_registered = false;

/* this backend's entry while it waits, or NULL */
static WorkflowWaiter *my_waiter = NULL;

static void wakeup_xact_callback(XactEvent event, void *arg);
static void wakeup_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static void forget_pending(void);
static void *grow_array(void *array, int *max, Size entry_size);
static int	wake_waiters(uint32 queue, int count);
static int	runners_to_wake(PendingWake wake);
static void interrupt_jobs(void);
static void register_callback(void);

/*
 * Shared memory needed: one waiter entry per PGPROC that can exist.
 */
Size
workflow_wakeup_shmem_size(void)
{
	Size		n = MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;

	return add_size(offsetof(WorkflowShared, waiters),
					mul_size(n, sizeof(WorkflowWaiter)));
}

/*
 * Initialise the shared area when it is first created.
 */
void
workflow_wakeup_shmem_init(WorkflowShared *shared)
{
	int			i;

	SpinLockInit(&shared->mutex);
	shared->launcher = NULL;
	shared->lock = NULL;
	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *slot = &shared->slots[i];

		slot->pid = 0;
		slot->started_at = 0;
		slot->dboid = InvalidOid;
		slot->proc = NULL;
		slot->idle = true;
		slot->idle_since = 0;
		pg_atomic_init_u32(&slot->leave, 0);
		pg_atomic_init_u64(&slot->job_id, 0);
		pg_atomic_init_u64(&slot->interrupt_job, 0);
		pg_atomic_init_u64(&slot->batch_claimed_at, 0);
	}
	for (i = 0; i < WF_MAX_DATABASES; i++)
	{
		WorkflowDatabase *db = &shared->databases[i];

		db->dboid = InvalidOid;
		db->served = false;
		db->absent = false;
		db->absent_pokes = 0;
		db->paused = false;
		db->released = false;
		db->paused_by = NULL;
		db->paused_pid = 0;
		pg_atomic_init_u32(&db->pokes, 0);
		pg_atomic_init_u32(&db->poke_pending, 0);
		pg_atomic_init_u32(&db->queued, 0);
	}
	pg_atomic_init_u32(&shared->unsettled,
					   workflow_crash_records_load(shared->interrupted));
	shared->nwaiters = MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
	for (i = 0; i < shared->nwaiters; i++)
	{
		pg_atomic_init_u32(&shared->waiters[i].waiting, 0);
		shared->waiters[i].queue = 0;
		shared->waiters[i].dboid = InvalidOid;
		shared->waiters[i].proc = NULL;
	}
}

/*
 * Queue identifier: 0 for the runners' queue (NULL or empty name), else a
 * non-zero hash of the task type.  Two task types with the same hash only
 * cause a spurious wake-up.
 */
uint32
workflow_queue_hash(const char *queue)
{
	uint32		h;

	if (queue == NULL || queue[0] == '\0')
		return 0;
	h = hash_bytes((const unsigned char *) queue, strlen(queue));
	return h == 0 ? 1 : h;
}

/*
 * Make room for one more entry in a pending list of TopTransactionContext;
 * returns the (possibly moved) array.
 */
static void *
grow_array(void *array, int *max, Size entry_size)
{
	int			newmax;

	if (array == NULL)
	{
		newmax = 16;
		array = MemoryContextAlloc(TopTransactionContext, newmax * entry_size);
	}
	else
	{
		if (*max >= (int) (MaxAllocSize / entry_size / 2))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many job interrupts or wake-ups pending in one transaction")));
		newmax = *max * 2;
		array = repalloc(array, newmax * entry_size);
	}
	*max = newmax;
	return array;
}

/*
 * Remember that `queue' got `count' more runnable jobs in this transaction.
 */
void
workflow_wake_queue_at_commit(uint32 queue, int count)
{
	int			level;
	int			i;

	workflow_require_shmem();
	register_callback();

	if (count <= 0)
		return;
	if (!IsTransactionState())
		elog(ERROR, "workflow wake-up requested outside a transaction");

	/* the commit callback will need to know whether the database is served */
	if (npending == 0)
		workflow_database_note_listed();

	/* add to this level's entry of the queue, if there is one */
	level = GetCurrentTransactionNestLevel();
	for (i = npending - 1; i >= 0 && pending[i].nestlevel == level; i--)
	{
		if (pending[i].queue == queue)
		{
			pending[i].count = (pending[i].count > INT_MAX - count) ?
				INT_MAX : pending[i].count + count;
			return;
		}
	}
	if (npending >= maxpending)
		pending = grow_array(pending, &maxpending, sizeof(PendingWake));
	pending[npending].queue = queue;
	pending[npending].count = count;
	pending[npending].nestlevel = level;
	npending++;
}

/*
 * Register the transaction callbacks once per backend, lazily, so that
 * backends that never touch a job pay nothing.
 */
static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		RegisterSubXactCallback(wakeup_subxact_callback, NULL);
		callback_registered = true;
	}
}

/*
 * Remember to interrupt, at commit, the worker executing `job_id'.  There
 * is no limit: a transaction may cancel (or the sweeper time out) any
 * number of running jobs.  Only a job an in-server runner is executing at
 * commit gets a signal; for any other (an external task, a job between two
 * tasks) the entry costs a comparison at commit.
 */
void
workflow_interrupt_job_at_commit(int64 job_id)
{
	int			level;

	workflow_require_shmem();
	register_callback();

	if (!IsTransactionState())
		elog(ERROR, "workflow job interrupt requested outside a transaction");

	/* the same job twice in a row (at this level) needs one entry */
	level = GetCurrentTransactionNestLevel();
	if (ninterrupts > 0 &&
		pending_interrupts[ninterrupts - 1].job_id == job_id &&
		pending_interrupts[ninterrupts - 1].nestlevel == level)
		return;
	if (ninterrupts >= maxinterrupts)
		pending_interrupts = grow_array(pending_interrupts, &maxinterrupts,
										sizeof(PendingInterrupt));
	pending_interrupts[ninterrupts].job_id = job_id;
	pending_interrupts[ninterrupts].nestlevel = level;
	ninterrupts++;
}

/*
 * workflow._interrupt_at_commit(job_id bigint): SQL entry point of the above.
 */
Datum
workflow_interrupt_at_commit(PG_FUNCTION_ARGS)
{
	workflow_interrupt_job_at_commit(PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

/*
 * Signal the workers executing the jobs recorded for interruption.  Runs
 * in the commit callback: only atomics, a spinlock and kill().  Few workers
 * execute a job at any time, so the pending list is compared with their
 * jobs, not the other way round.
 */
static void
interrupt_jobs(void)
{
	int			i,
				k;

	if (ninterrupts == 0)
		return;
	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *slot = &WorkflowShmem->slots[i];
		uint64		job = pg_atomic_read_u64(&slot->job_id);
		pid_t		pid;

		if (job == 0)
			continue;
		for (k = 0; k < ninterrupts; k++)
			if ((uint64) pending_interrupts[k].job_id == job)
				break;
		if (k == ninterrupts)
			continue;
		/* job ids are per database */
		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = slot->dboid == MyDatabaseId ? slot->pid : 0;
		SpinLockRelease(&WorkflowShmem->mutex);
		if (pid == 0)
			continue;
		pg_atomic_write_u64(&slot->interrupt_job, job);
		kill(pid, SIGINT);
	}
}

/*
 * workflow._wake_at_commit(queue text, count int): SQL entry point of the
 * above; NULL means the in-server runners' queue.  Returns count, so that a
 * set-based statement can wake from its select list.
 */
Datum
workflow_wake_at_commit(PG_FUNCTION_ARGS)
{
	char	   *queue = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			count = PG_ARGISNULL(1) ? 1 : PG_GETARG_INT32(1);

	workflow_wake_queue_at_commit(workflow_queue_hash(queue), count);
	PG_RETURN_INT32(count);
}

/*
 * Set the latches of up to `count' waiters of `queue' of this database;
 * returns how many.  Runs in a commit callback: no ERROR, no allocation,
 * no locks but the atomics.
 */
static int
wake_waiters(uint32 queue, int count)
{
	int			i;
	int			woken = 0;

	for (i = 0; i < WorkflowShmem->nwaiters && woken < count; i++)
	{
		WorkflowWaiter *w = &WorkflowShmem->waiters[i];

		if (pg_atomic_read_u32(&w->waiting) == 0)
			continue;
		if (w->queue != queue || w->dboid != MyDatabaseId)
			continue;
		/* claim this waiter so that two committers do not wake the same one */
		if (pg_atomic_exchange_u32(&w->waiting, 0) == 0)
			continue;
		SetLatch(&w->proc->procLatch);
		woken++;
	}
	return woken;
}

/*
 * How many waiters of a queue to wake for the jobs it got.  A runner
 * claims up to workflow.batch_size jobs at a time, so one runner per batch
 * of jobs is enough: waking one per job would have the others claim
 * nothing, at the cost of a transaction each, on every commit of a
 * producer (a runner busy with a long batch is relieved by the idle ones,
 * see take_over_jobs in src/runner.c).  A long-polling external worker may ask
 * for a single task: one per task.
 */
static int
runners_to_wake(PendingWake wake)
{
	if (wake.queue != 0 || workflow_batch_size <= 1)
		return wake.count;
	return wake.count / workflow_batch_size + (wake.count % workflow_batch_size != 0);
}

/*
 * Forget what the transaction would have done at commit.  The arrays are
 * in TopTransactionContext, which goes away with the transaction.
 */
static void
forget_pending(void)
{
	pending = NULL;
	npending = 0;
	maxpending = 0;
	pending_interrupts = NULL;
	ninterrupts = 0;
	maxinterrupts = 0;
}

/*
 * At commit, interrupt the canceled jobs and wake the waiters of every
 * queue that got work; forget everything at abort.
 *
 * A prepared transaction cannot keep them: COMMIT PREPARED runs no callback
 * in this backend.  A job interrupt would be lost, leaving the canceled
 * job's SQL running until its timeout, so PREPARE is refused (as PostgreSQL
 * refuses to prepare a transaction that did NOTIFY).  Wake-ups are only an
 * optimisation: those of a prepared transaction are dropped, and the
 * waiters find the work at their next workflow.run_interval.
 */
static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	int			i;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (ninterrupts > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that canceled a running job"),
						 errdetail("The job's SQL is interrupted when the cancel commits, which a prepared transaction cannot do.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (WorkflowShmem != NULL)
			{
				bool		want_runner = false;

				interrupt_jobs();
				for (i = 0; i < npending; i++)
				{
					int			wanted = runners_to_wake(pending[i]);

					if (wake_waiters(pending[i].queue, wanted) < wanted &&
						pending[i].queue == 0)
						want_runner = true;
				}
				/* no idle runner here to wake: the launcher sends one */
				if (npending > 0)
					workflow_database_touch(want_runner);
			}
			forget_pending();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			forget_pending();
			break;
		default:
			break;
	}
}

/*
 * At the end of a subtransaction: its rollback drops the wake-ups and
 * interrupts it added (and those of its committed children, which it
 * holds by then); its commit hands them to the parent level, merging the
 * wake-ups of a queue into one entry.  The subtransaction's entries are
 * the tail of each list.  Runs in the subtransaction still current
 * (GetCurrentTransactionNestLevel() is its level); allocates nothing.
 */
static void
wakeup_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			level;
	int			first;
	int			i;

	if (npending == 0 && ninterrupts == 0)
		return;
	level = GetCurrentTransactionNestLevel();

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			while (npending > 0 && pending[npending - 1].nestlevel >= level)
				npending--;
			while (ninterrupts > 0 && pending_interrupts[ninterrupts - 1].nestlevel >= level)
				ninterrupts--;
			break;

		case SUBXACT_EVENT_COMMIT_SUB:
			for (i = ninterrupts - 1; i >= 0 && pending_interrupts[i].nestlevel >= level; i--)
				pending_interrupts[i].nestlevel = level - 1;

			/* this level's wake-ups, merged into the parent level's */
			first = npending;
			while (first > 0 && pending[first - 1].nestlevel >= level)
				first--;
			if (first < npending)
			{
				int			parent_first = first;
				int			n = first;

				while (parent_first > 0 && pending[parent_first - 1].nestlevel >= level - 1)
					parent_first--;
				for (i = first; i < npending; i++)
				{
					PendingWake w = pending[i];
					int			k;

					for (k = parent_first; k < n; k++)
					{
						if (pending[k].queue == w.queue)
						{
							pending[k].count = (pending[k].count > INT_MAX - w.count) ?
								INT_MAX : pending[k].count + w.count;
							break;
						}
					}
					if (k == n)
					{
						w.nestlevel = level - 1;
						pending[n++] = w;
					}
				}
				npending = n;
			}
			break;

		default:
			break;
	}
}

/*
 * Announce that this backend is about to sleep on its latch waiting for
 * work of `queue' of its database.  The caller then resets its latch,
 * checks for work, and sleeps only if it found none; it calls
 * workflow_wait_end() afterwards.
 */
void
workflow_wait_begin(uint32 queue)
{
	workflow_require_shmem();

	my_waiter = &WorkflowShmem->waiters[WF_MY_PROC_NUMBER];
	my_waiter->proc = MyProc;
	my_waiter->queue = queue;
	my_waiter->dboid = MyDatabaseId;
	pg_write_barrier();
	pg_atomic_write_u32(&my_waiter->waiting, 1);
}

/*
 * This backend stopped waiting (woken, timed out, or found work).
 */
void
workflow_wait_end(void)
{
	if (my_waiter != NULL)
	{
		pg_atomic_write_u32(&my_waiter->waiting, 0);
		my_waiter = NULL;
	}
}
