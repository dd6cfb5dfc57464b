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
 * about to sleep for work stores the hash of its queue (0 = the in-server
 * runners' queue, otherwise the hash of an external task type) and then
 * sets `waiting'; it resets its latch, checks for work, and only then
 * sleeps, so a wake-up between its check and its sleep is never lost.
 * A transaction that makes work runnable records (queue, count) in
 * backend-local memory; the XACT_EVENT_COMMIT callback, which runs after
 * the commit is visible to other snapshots, claims up to `count' waiters of
 * each queue by an atomic exchange of `waiting' and sets their latches.
 * The callback runs in post-commit cleanup where an ERROR is not allowed,
 * so it does nothing but atomics, SetLatch and kill().  On abort the
 * record is simply dropped.
 *
 * Interrupts.  cancel_job() (and the sweeper, for timeouts) records the job
 * ids whose running SQL must stop.  At commit the callback looks for the
 * worker slot executing each job, stores the job id in the slot's
 * `interrupt_job' and sends the worker SIGINT, which cancels its current
 * statement exactly like pg_cancel_backend().  Doing it at commit means
 * that the runner's own guarded bookkeeping already sees the new state of
 * the job and rolls the task back.
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

/* queues to wake when the current transaction commits */
#define MAX_PENDING_QUEUES 16

typedef struct PendingWake
{
	uint32		queue;
	int			count;
} PendingWake;

static PendingWake pending[MAX_PENDING_QUEUES];
static int	npending = 0;
static bool pending_overflow = false;
static bool callback_registered = false;

/* jobs whose running SQL to interrupt when the transaction commits */
#define MAX_PENDING_INTERRUPTS 64

static int64 pending_interrupts[MAX_PENDING_INTERRUPTS];
static int	ninterrupts = 0;

/* this backend's entry while it waits, or NULL */
static WorkflowWaiter *my_waiter = NULL;

static void wakeup_xact_callback(XactEvent event, void *arg);
static void wake_waiters(uint32 queue, int count);
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
	for (i = 0; i < WF_NUM_SLOTS; i++)
	{
		WorkflowWorkerSlot *slot = &shared->slots[i];

		slot->pid = 0;
		slot->proc = NULL;
		slot->generation = 0;
		slot->started_at = 0;
		slot->alive_at = 0;
		slot->idle = true;
		pg_atomic_init_u64(&slot->job_id, 0);
		pg_atomic_init_u64(&slot->interrupt_job, 0);
		pg_atomic_init_u64(&slot->batch_claimed_at, 0);
	}
	pg_atomic_init_u64(&shared->wakeups, 0);
	shared->nwaiters = MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
	for (i = 0; i < shared->nwaiters; i++)
	{
		pg_atomic_init_u32(&shared->waiters[i].waiting, 0);
		shared->waiters[i].queue = 0;
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
 * Remember that `queue' got `count' more runnable jobs in this transaction.
 */
void
workflow_wake_queue_at_commit(uint32 queue, int count)
{
	int			i;

	workflow_require_shmem();
	register_callback();

	if (count <= 0)
		return;
	for (i = 0; i < npending; i++)
	{
		if (pending[i].queue == queue)
		{
			pending[i].count = (pending[i].count > INT_MAX - count) ?
				INT_MAX : pending[i].count + count;
			return;
		}
	}
	if (npending < MAX_PENDING_QUEUES)
	{
		pending[npending].queue = queue;
		pending[npending].count = count;
		npending++;
	}
	else
		pending_overflow = true;	/* wake every waiter at commit */
}

/*
 * Register the transaction callback once per backend, lazily, so that
 * backends that never touch a job pay nothing.
 */
static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		callback_registered = true;
	}
}

/*
 * Remember to interrupt, at commit, the worker executing `job_id'.
 */
void
workflow_interrupt_job_at_commit(int64 job_id)
{
	int			i;

	workflow_require_shmem();
	register_callback();

	for (i = 0; i < ninterrupts; i++)
		if (pending_interrupts[i] == job_id)
			return;
	if (ninterrupts < MAX_PENDING_INTERRUPTS)
		pending_interrupts[ninterrupts++] = job_id;
	else
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cannot interrupt more than %d running jobs in one transaction",
						MAX_PENDING_INTERRUPTS),
				 errhint("Cancel running jobs in smaller transactions.")));
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
 * in the commit callback: only atomics, a spinlock and kill().
 */
static void
interrupt_jobs(void)
{
	int			i,
				k;

	for (k = 0; k < ninterrupts; k++)
	{
		for (i = 0; i < WF_NUM_SLOTS; i++)
		{
			WorkflowWorkerSlot *slot = &WorkflowShmem->slots[i];
			pid_t		pid;

			if (pg_atomic_read_u64(&slot->job_id) != (uint64) pending_interrupts[k])
				continue;
			SpinLockAcquire(&WorkflowShmem->mutex);
			pid = slot->pid;
			SpinLockRelease(&WorkflowShmem->mutex);
			if (pid == 0)
				continue;
			pg_atomic_write_u64(&slot->interrupt_job, (uint64) pending_interrupts[k]);
			kill(pid, SIGINT);
		}
	}
}

/*
 * workflow._wake_at_commit(queue text, count int): SQL entry point of the
 * above; NULL means the in-server runners' queue.
 */
Datum
workflow_wake_at_commit(PG_FUNCTION_ARGS)
{
	char	   *queue = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			count = PG_ARGISNULL(1) ? 1 : PG_GETARG_INT32(1);

	workflow_wake_queue_at_commit(workflow_queue_hash(queue), count);
	PG_RETURN_VOID();
}

/*
 * Set the latches of up to `count' waiters of `queue' (all waiters of all
 * queues when queue is PG_UINT32_MAX).  Runs in a commit callback: no
 * ERROR, no allocation, no locks but the atomics.
 */
static void
wake_waiters(uint32 queue, int count)
{
	int			i;

	for (i = 0; i < WorkflowShmem->nwaiters && count > 0; i++)
	{
		WorkflowWaiter *w = &WorkflowShmem->waiters[i];

		if (pg_atomic_read_u32(&w->waiting) == 0)
			continue;
		if (queue != PG_UINT32_MAX && w->queue != queue)
			continue;
		/* claim this waiter so that two committers do not wake the same one */
		if (pg_atomic_exchange_u32(&w->waiting, 0) == 0)
			continue;
		pg_atomic_fetch_add_u64(&WorkflowShmem->wakeups, 1);
		SetLatch(&w->proc->procLatch);
		count--;
	}
}

/*
 * How many waiters of a queue to wake for the jobs it got.  A runner
 * claims up to workflow.batch_size jobs at a time, so one runner per batch
 * of jobs is enough: waking one per job would have the others claim
 * nothing, at the cost of a transaction each, on every commit of a
 * producer (a runner busy with a long batch is relieved by the idle ones,
 * see steal_jobs in src/runner.c).  A long-polling external worker may ask
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
 * At commit, wake the waiters of every queue that got work; forget
 * everything at abort or prepare.
 */
static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	int			i;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (WorkflowShmem != NULL)
			{
				interrupt_jobs();
				if (pending_overflow)
					wake_waiters(PG_UINT32_MAX, INT_MAX);
				else
					for (i = 0; i < npending; i++)
						wake_waiters(pending[i].queue, runners_to_wake(pending[i]));
			}
			npending = 0;
			ninterrupts = 0;
			pending_overflow = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			npending = 0;
			ninterrupts = 0;
			pending_overflow = false;
			break;
		default:
			break;
	}
}

/*
 * Announce that this backend is about to sleep on its latch waiting for
 * work of `queue'.  The caller then resets its latch, checks for work, and
 * sleeps only if it found none; it calls workflow_wait_end() afterwards.
 */
void
workflow_wait_begin(uint32 queue)
{
	workflow_require_shmem();

	my_waiter = &WorkflowShmem->waiters[WF_MY_PROC_NUMBER];
	my_waiter->proc = MyProc;
	my_waiter->queue = queue;
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
