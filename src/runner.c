/*-------------------------------------------------------------------------
 *
 * runner.c
 *		The runner background worker: claims runnable jobs of the in-server
 *		queue and executes their SQL and wait tasks (node-workflow runner
 *		with `forks' = workflow.runners).
 *
 * Batches.  A runner claims up to workflow.batch_size jobs at once — only
 * as many as are waiting, so a short queue keeps its latency — in a short
 * transaction of its own (execution = running, runner id, a new lease),
 * committed before any task runs, without waiting for its WAL flush
 * (claim_batch says why that is safe).
 * The batch's tasks then run in one transaction, each job's task in a
 * subtransaction of its own together with the guard of its outcome: a
 * task's effects and its job's progress commit or roll back together, and
 * one commit (one WAL flush) serves the whole batch.  If a job was
 * canceled, timed out or handed over meanwhile, the guard (the job still
 * running under the lease of this claim) finds nothing and the runner
 * rolls that job's subtransaction back.  The usual outcome -- a task
 * succeeded -- is guarded by locking the job's row, and recorded for the
 * whole batch by one execution of workflow._tasks_succeeded before the
 * commit (hold_success, flush_successes); every other outcome is recorded
 * at once by workflow._runner_record.
 *
 * Nothing of a task's definition is read per job: the claim returns the
 * jobs' rows, and src/task_cache.c caches the definitions and the prepared
 * plans of the tasks' SQL.  A runner that dies
 * leaves its jobs `running' under a runner that stopped reporting; the
 * sweeper applies the workflows' on_stale policy.
 *
 * Jobs whose next task is again an SQL task stay claimed by the runner and
 * make its next batch.  A slow task does not hold back the rest of its
 * batch while other runners idle: a runner that finds nothing queued takes
 * over the jobs another runner claimed more than TAKEOVER_AFTER_MS ago and has
 * not started yet (workflow._runner_takeover); the lease makes this safe.
 *
 * One fault touches one job.  Everything the runner does for a job -- the
 * check that the job is still its own, the context query, the task, the
 * guard and record of its outcome -- happens inside that job's
 * subtransaction (opened by workflow_task_begin()); an error there rolls
 * back that job's work only and is recorded for that job only
 * (job_fault()), in a subtransaction of its own: the failure paths may pay
 * for one, the success path still has one subtransaction per job.  A row
 * of a job that another transaction holds locked is waited for at most
 * GUARD_LOCK_TIMEOUT (bound_lock_waits): then the job's work is rolled
 * back and the job is handed back to the queue, untouched, once the row is
 * free (the deferred list).  Only an error of the batch as a whole undoes
 * the batch -- its commit, or a job's row changed (or locked for longer
 * than GUARD_LOCK_TIMEOUT) between the end of its task's subtransaction
 * and the lock of its success (lock_success) -- and its jobs are then
 * handed back, not failed.
 *
 * Signals.  SIGTERM asks for a graceful stop: an idle runner exits; a busy
 * one cancels the statement of its task, and hands the job back to the
 * queue (same task, no attempt counted) before exiting, so that a fast
 * shutdown leaves nothing stale.  SIGINT cancels the body of the task
 * being run (statement timeouts, cancel_job, pg_cancel_backend) and is
 * ignored at any other time: it was meant for a body that is over.  A body
 * that does not stop within workflow.cancel_grace_period of its cancel (it
 * catches query_canceled) makes the runner exit as die() would (FATAL,
 * which no task can catch): that task gets a failed attempt and the other
 * jobs of the batch are handed back, before the process exits
 * (runner_exit_handback).  SIGHUP reloads the configuration.
 *
 * Databases.  A runner serves the database it was started for (bgw_extra)
 * until the launcher gives its slot to another database (src/launcher.c):
 * asked to leave (its slot's `leave'), it finishes the task it runs, hands
 * back untouched the jobs of its batch it has not started, and exits.
 * Everything it compares with other slots (takeovers) is of its database.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/int.h"
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
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "workflow.h"

/* set by SIGTERM */
static volatile sig_atomic_t shutdown_requested = false;

/*
 * While a task body runs (workflow_task_running), SIGTERM also cancels its
 * statement, and the first cancel to reach the body is noted here, for the
 * watchdog (cancel_watchdog) to escalate after workflow.cancel_grace_period.
 */
static volatile TimestampTz cancel_noted_at = 0;
static volatile int64 running_job = 0;

/* set by the watchdog: the job whose task ignored its cancel (0: none) */
static volatile int64 escalated_job = 0;
static TimeoutId watchdog_timeout;

static WorkflowWorkerSlot *my_slot = NULL;
static int	my_slot_number = -1;
static char my_runner_id[NAMEDATALEN];
static Oid	registered_extension = InvalidOid;

/* upper bound of workflow.batch_size */
#define MAX_BATCH 1000

/* an idle runner takes over jobs claimed this long ago and not started */
#define TAKEOVER_AFTER_MS 100

/*
 * Tasks of a job claimed this long ago are run without first checking that
 * the claim still holds (the lease guard after the task still applies):
 * well under TAKEOVER_AFTER_MS, so that a job taken over by another runner is
 * never started twice.
 */
#define TRUST_CLAIM_MS 50

/* how long the runner's bookkeeping waits for a row lock (bound_lock_waits) */
#define GUARD_LOCK_TIMEOUT "200ms"
/* ... and for a row it found locked already (retry_deferred) */
#define DEFERRED_LOCK_TIMEOUT "10ms"

/* the job in hand, as claimed */
typedef struct ClaimedJob
{
	int64		id;
	int64		lease;
	int64		workflow_id;
	WorkflowPhase phase;
	int			step;
	bool		in_fallback;
	Oid			owner;			/* created_by */
	TimestampTz deadline;		/* DT_NOEND when none */
	int			attempt;
	int			task_attempt;
	TimestampTz claimed_at;		/* no later than the claim's claimed_at */
	ItemPointerData tid;		/* the row version the claim made, or invalid */
} ClaimedJob;

/*
 * The lease guard of the runner's statements: job $1 is still running
 * under the lease $2 of our claim (src/guard.c tests the same without a
 * statement, before and after a task).  "(execution = 'running') IS TRUE" is
 * the same test, in a form that does not match the predicate of the
 * jobs_running index, so that the generic plan never scans every running
 * job of that (small, hence cheap-looking) index instead of the primary
 * key.
 */
#define JOB_IS_OURS "id = $1 AND lease = $2 AND (execution = 'running') IS TRUE"

/* the columns in which _runner_claim, _runner_takeover and _runner_record return a job */
#define JOB_COLUMNS "id, lease, workflow_id, phase::text AS phase, step, in_fallback, " \
	"created_by::oid AS owner, deadline, attempt, task_attempt"

/* where each column of JOB_COLUMNS is in a result: found by name, once per result */
typedef struct JobColumns
{
	int			id,
				lease,
				workflow_id,
				phase,
				step,
				in_fallback,
				owner,
				deadline,
				attempt,
				task_attempt,
				tid;			/* 0: the result has no row address */
} JobColumns;

/*
 * The batch being run, for the hand-back when the runner must exit in the
 * middle of it (runner_exit_handback).
 */
static ClaimedJob *current_batch = NULL;
static int	current_nbatch = 0;

/*
 * Jobs to hand back whose row another transaction keeps locked: still
 * claimed by this runner (running, its lease), retried at every turn of
 * the main loop until the row is free.
 */
static ClaimedJob deferred[MAX_BATCH];
static int	ndeferred = 0;

/* pending successes are written before they hold this many output bytes */
#define FLUSH_OUTPUT_BYTES (64 * 1024 * 1024)

/* a task success whose record waits for the end of the batch */
typedef struct PendingSuccess
{
	int64		id;
	int64		lease;
	Datum		output;			/* jsonb, or 0 for NULL */
	TimestampTz started;
	TimestampTz finished;
	bool		unlocked;		/* its row is to be locked after the task (lock_success) */
	ItemPointerData tid;		/* where its row was found */
} PendingSuccess;

static PendingSuccess pending[MAX_BATCH];
static int	npending = 0;
static Size pending_bytes = 0;

/* what the step loop should do next */
typedef enum StepNext
{
	STEP_CONTINUE,				/* the job is still ours at its next SQL task */
	STEP_DONE					/* the job left us (advanced, waiting, finished...) */
} StepNext;

static void runner_sigterm(SIGNAL_ARGS);
static void runner_sigint(SIGNAL_ARGS);
static void cancel_watchdog(void);
static void runner_exit_handback(int code, Datum arg);
static int	claim_batch(ClaimedJob *jobs, int limit);
static int	collect_claims(ClaimedJob *jobs, int limit, TimestampTz claimed_at);
static void find_job_columns(TupleDesc desc, JobColumns *columns);
static void read_job(ClaimedJob *job, HeapTuple row, TupleDesc desc, const JobColumns *columns);
static bool claim_holds(ClaimedJob *job);
static Datum job_context(ClaimedJob *job, WorkflowTaskDef *step, bool *holds);
static bool hold_success(ClaimedJob *job, WorkflowTaskDef *step, Datum output,
						 TimestampTz started, bool *still_running);
static void lock_success(ClaimedJob *job);
static void flush_successes(ClaimedJob *kept, int nkept);
static int	take_over_jobs(ClaimedJob *jobs, int limit);
static void publish_batch(ClaimedJob *jobs, int n);
static int	run_batch(ClaimedJob *jobs, int n, ClaimedJob *next);
static void release_jobs(ClaimedJob *jobs, int n, WorkflowOutcome outcome);
static bool leaving(void);
static StepNext run_step(ClaimedJob *job);
static StepNext run_step_guarded(ClaimedJob *job);
static bool ready_to_run(ClaimedJob *job, WorkflowTaskDef *step, TimestampTz started,
						 Datum *context, StepNext *next);
static int	task_timeout_ms(ClaimedJob *job, WorkflowTaskDef *step, TimestampTz started);
static uint64 run_body(ClaimedJob *job, WorkflowTaskDef *step, Datum context, int timeout_ms,
					   WorkflowTaskResult *res);
static WorkflowOutcome failure_outcome(ClaimedJob *job, int sqlerrcode, uint64 interrupted,
									   bool *dropped);
static StepNext record_here(ClaimedJob *job, WorkflowOutcome outcome, Datum error,
							TimestampTz started);
static bool outcome_type_exists(void);
static bool record_outcome(ClaimedJob *job, WorkflowOutcome outcome, Datum output, Datum error,
						   TimestampTz started, int64 delay_ms, Datum info, bool *still_running);
static bool record_isolated(ClaimedJob *job, WorkflowOutcome outcome, Datum error,
							bool *still_running);
static StepNext job_fault(ClaimedJob *job, ErrorData *edata);
static Datum runner_error(int sqlerrcode, const char *message, const char *detail);
static void defer_job(ClaimedJob *job);
static void retry_deferred(void);
static Datum creator_problem(Oid owner);
static int64 saturating_add(int64 a, int64 b);
static void bound_lock_waits(const char *timeout);
static int64 saturating_mul(int64 a, int64 b);

/*
 * The identifier of the runner of slot `slot' in workflow.runners.
 */
void
workflow_runner_id(int slot, char *buf, size_t len)
{
	snprintf(buf, len, "runner-%d", slot);
}

/*
 * SIGTERM: stop gracefully.  While a task runs, cancel its statement too
 * (as StatementCancelHandler would), so the job is handed back promptly.
 */
static void
runner_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	if (workflow_task_running && !proc_exit_inprogress)
	{
		if (cancel_noted_at == 0)
			cancel_noted_at = GetCurrentTimestamp();
		InterruptPending = true;
		QueryCancelPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * SIGINT (a task's statement timeout, cancel_job, pg_cancel_backend):
 * cancel the body of the task being run, as StatementCancelHandler does,
 * and note when for the watchdog.  Outside a body only the runner's own
 * lock timeout (which PostgreSQL delivers as SIGINT too) cancels anything:
 * a late cancel must not fail the runner's bookkeeping of a task that is
 * over, or of another job.
 */
static void
runner_sigint(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (workflow_task_running && !proc_exit_inprogress)
	{
		if (cancel_noted_at == 0)
			cancel_noted_at = GetCurrentTimestamp();
		StatementCancelHandler(postgres_signal_arg);
	}
	else if (get_timeout_indicator(LOCK_TIMEOUT, false) && !proc_exit_inprogress)
	{
		/* the runner's own bound on a lock wait (bound_lock_waits) */
		StatementCancelHandler(postgres_signal_arg);
	}
	else
		SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Timeout handler, every few hundred milliseconds while a batch runs: a
 * task body that has not stopped workflow.cancel_grace_period after it was
 * canceled caught the cancel.  Escalate as die() does: the next interrupt
 * check raises FATAL, which no exception block can catch, and
 * runner_exit_handback() records what it can.
 */
static void
cancel_watchdog(void)
{
	TimestampTz since = cancel_noted_at;

	if (!workflow_task_running || since == 0 || escalated_job != 0 ||
		proc_exit_inprogress)
		return;
	if (!TimestampDifferenceExceeds(since, GetCurrentTimestamp(),
									workflow_cancel_grace_period))
		return;
	escalated_job = running_job;
	InterruptPending = true;
	ProcDiePending = true;
	SetLatch(MyLatch);
}

/*
 * Entry point of a runner.
 */
void
workflow_runner_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	Oid			dboid;
	MemoryContext loop_context;
	ClaimedJob *batch;
	ClaimedJob *next;
	int			nbatch = 0;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, runner_sigterm);
	pqsignal(SIGINT, runner_sigint);
	BackgroundWorkerUnblockSignals();

	my_slot = workflow_worker_attach(slot, dboid);
	my_slot_number = slot;
	workflow_worker_connect(dboid);
	watchdog_timeout = RegisterTimeout(USER_TIMEOUT, cancel_watchdog);
	/* after the connection: runs before its transaction is cleaned up */
	before_shmem_exit(runner_exit_handback, (Datum) 0);
	workflow_runner_id(slot, my_runner_id, sizeof(my_runner_id));
	pgstat_report_appname(my_runner_id);

	loop_context = AllocSetContextCreate(TopMemoryContext, "workflow runner",
										 ALLOCSET_DEFAULT_SIZES);
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(ClaimedJob) * MAX_BATCH);
	next = MemoryContextAlloc(TopMemoryContext, sizeof(ClaimedJob) * MAX_BATCH);

	while (!shutdown_requested)
	{
		CHECK_FOR_INTERRUPTS();
		workflow_worker_reload_if_needed();
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		if (ndeferred > 0)
			retry_deferred();

		/*
		 * Asked to leave for another database: hand back the jobs not
		 * started, and go once no row of ours is left locked by someone else
		 * (the deferred jobs), so that nothing is left to the stale policy.
		 */
		if (leaving())
		{
			if (nbatch > 0)
				release_jobs(batch, nbatch, WF_OUTCOME_RETURN);
			nbatch = 0;
			if (ndeferred == 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 workflow_run_interval, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		if (!workflow_enabled && nbatch == 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 workflow_run_interval, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		if (nbatch == 0)
		{
			/* announce before looking, so that no wake-up is lost */
			workflow_wait_begin(0);
			ResetLatch(MyLatch);
			nbatch = claim_batch(batch, Min(workflow_batch_size, MAX_BATCH));
			if (nbatch == 0)
			{
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 workflow_run_interval, PG_WAIT_EXTENSION);
				workflow_wait_end();
				continue;
			}
			workflow_wait_end();
		}

		/* jobs still ours at their next SQL task make the next batch */
		workflow_worker_set_idle(my_slot, false);
		nbatch = run_batch(batch, nbatch, next);
		memcpy(batch, next, sizeof(ClaimedJob) * nbatch);
		workflow_worker_set_idle(my_slot, nbatch == 0);
		pgstat_report_activity(STATE_IDLE, NULL);
	}

	/* hand back what we still hold */
	if (nbatch > 0)
		release_jobs(batch, nbatch, WF_OUTCOME_RELEASE);
	if (ndeferred > 0)
		retry_deferred();
	proc_exit(0);
}

/*
 * Claim up to `limit' jobs in a transaction of its own.  It commits
 * without waiting for its WAL flush, which is off the path from a job's
 * creation to its task's start: the batch's transaction commits
 * synchronously and so flushes the claim with any effect of a task, and a
 * claim lost in a crash of the server is settled from the crash record
 * written before the task started (src/crashrecord.c): the job that was
 * executing still gets its failed run and on_stale policy, and the others
 * are simply queued again, as none of their tasks ran.  Registers the
 * runner first when the extension is new to us.  Returns how many.
 */
static int
claim_batch(ClaimedJob *jobs, int limit)
{
	static SPIPlanPtr plan = NULL;
	Oid			extoid;
	Datum		values[2];
	int			n;

	workflow_begin_spi();
	/* SET LOCAL synchronous_commit = off, see above */
	(void) set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	extoid = workflow_extension_ready();
	if (!OidIsValid(extoid))
	{
		registered_extension = InvalidOid;
		workflow_end_spi(true);
		return 0;
	}
	if (extoid != registered_extension)
	{
		Oid			argtypes[1] = {TEXTOID};

		values[0] = CStringGetTextDatum(my_runner_id);
		if (SPI_execute_with_args("SELECT workflow.register_runner($1, 'runner')",
								  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "workflow runner could not register itself");
		registered_extension = extoid;
		/* ids start again in a new extension */
		workflow_task_cache_reset();
	}

	if (plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, INT4OID};

		/* claim order, in which the batch runs */
		workflow_keep_plan(&plan, "SELECT " JOB_COLUMNS ", tid FROM workflow._runner_claim($1, $2) "
						   "ORDER BY priority DESC, run_at, id", 2, argtypes);
	}
	values[0] = CStringGetTextDatum(my_runner_id);
	values[1] = Int32GetDatum(limit);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "workflow runner could not claim jobs");
	n = collect_claims(jobs, limit, GetCurrentTransactionStartTimestamp());
	if (n == 0)
		n = take_over_jobs(jobs, limit);
	workflow_end_spi(true);
	return n;
}

/*
 * Read the jobs (JOB_COLUMNS) a claim returned.
 */
static int
collect_claims(ClaimedJob *jobs, int limit, TimestampTz claimed_at)
{
	uint64		i;
	int			n = 0;
	JobColumns	columns;

	find_job_columns(SPI_tuptable->tupdesc, &columns);
	for (i = 0; i < SPI_processed && n < limit; i++)
	{
		read_job(&jobs[n], SPI_tuptable->vals[i], SPI_tuptable->tupdesc, &columns);
		jobs[n].claimed_at = claimed_at;
		n++;
	}
	return n;
}

/*
 * The column number of `name' in a result, which must have it.
 */
static int
column_number(TupleDesc desc, const char *name)
{
	int			number = SPI_fnumber(desc, name);

	if (number <= 0)
		elog(ERROR, "workflow runner found no column \"%s\" in a job", name);
	return number;
}

/*
 * Where the columns of JOB_COLUMNS are in a result.
 */
static void
find_job_columns(TupleDesc desc, JobColumns *columns)
{
	columns->id = column_number(desc, "id");
	columns->lease = column_number(desc, "lease");
	columns->workflow_id = column_number(desc, "workflow_id");
	columns->phase = column_number(desc, "phase");
	columns->step = column_number(desc, "step");
	columns->in_fallback = column_number(desc, "in_fallback");
	columns->owner = column_number(desc, "owner");
	columns->deadline = column_number(desc, "deadline");
	columns->attempt = column_number(desc, "attempt");
	columns->task_attempt = column_number(desc, "task_attempt");
	columns->tid = Max(SPI_fnumber(desc, "tid"), 0);
}

/*
 * Read a job from the JOB_COLUMNS of a row.
 */
static void
read_job(ClaimedJob *job, HeapTuple row, TupleDesc desc, const JobColumns *columns)
{
	bool		isnull;
	Datum		value;

	job->id = DatumGetInt64(SPI_getbinval(row, desc, columns->id, &isnull));
	job->lease = DatumGetInt64(SPI_getbinval(row, desc, columns->lease, &isnull));
	job->workflow_id = DatumGetInt64(SPI_getbinval(row, desc, columns->workflow_id, &isnull));
	job->phase = workflow_phase_from_name(SPI_getvalue(row, desc, columns->phase));
	job->step = DatumGetInt32(SPI_getbinval(row, desc, columns->step, &isnull));
	job->in_fallback = DatumGetBool(SPI_getbinval(row, desc, columns->in_fallback, &isnull));
	job->owner = DatumGetObjectId(SPI_getbinval(row, desc, columns->owner, &isnull));
	value = SPI_getbinval(row, desc, columns->deadline, &isnull);
	job->deadline = isnull ? DT_NOEND : DatumGetTimestampTz(value);
	job->attempt = DatumGetInt32(SPI_getbinval(row, desc, columns->attempt, &isnull));
	job->task_attempt = DatumGetInt32(SPI_getbinval(row, desc, columns->task_attempt, &isnull));
	ItemPointerSetInvalid(&job->tid);
	if (columns->tid > 0)
	{
		value = SPI_getbinval(row, desc, columns->tid, &isnull);
		if (!isnull)
			ItemPointerCopy((ItemPointer) DatumGetPointer(value), &job->tid);
	}
}

/*
 * Tell idle runners, through shared memory, since when the jobs of the
 * batch about to run have been waiting: take_over_jobs() looks in the table
 * only when some live runner's batch has waited long enough.
 */
static void
publish_batch(ClaimedJob *jobs, int n)
{
	TimestampTz oldest = DT_NOEND;
	int			i;

	for (i = 0; i < n; i++)
		oldest = Min(oldest, jobs[i].claimed_at);
	pg_atomic_write_u64(&my_slot->batch_claimed_at, (uint64) Max(oldest, 1));
}

/*
 * Nothing queued: take over jobs that a busy runner claimed long enough
 * ago but has not started (see workflow._runner_takeover), so that one slow
 * task does not hold back the quick jobs claimed in its batch while other
 * runners are idle.
 */
static int
take_over_jobs(ClaimedJob *jobs, int limit)
{
	static SPIPlanPtr plan = NULL;
	Datum		busy[WF_NUM_SLOTS];
	Datum		live[WF_NUM_SLOTS];
	Datum		since[WF_NUM_SLOTS];
	int			nbusy = 0;
	int			nlive = 0;
	bool		waited = false;
	TimestampTz before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -TAKEOVER_AFTER_MS);
	Datum		values[6];
	Interval   *after;
	int			i;

	/* the runners of this database (job ids and runner ids are per database) */
	for (i = WF_FIRST_RUNNER_SLOT; i <= WF_MAX_RUNNERS; i++)
	{
		WorkflowWorkerSlot *slot = &WorkflowShmem->slots[i];
		uint64		job_id = pg_atomic_read_u64(&slot->job_id);
		uint64		batch_since = pg_atomic_read_u64(&slot->batch_claimed_at);
		pid_t		pid;
		Oid			dboid;
		TimestampTz started_at;
		char		id[NAMEDATALEN];

		SpinLockAcquire(&WorkflowShmem->mutex);
		pid = slot->pid;
		dboid = slot->dboid;
		started_at = slot->started_at;
		SpinLockRelease(&WorkflowShmem->mutex);
		if (dboid != MyDatabaseId)
			continue;
		if (job_id != 0)
			busy[nbusy++] = Int64GetDatum((int64) job_id);
		if (pid == 0 || pid == MyProcPid)
			continue;
		/* a batch of this runner has waited long enough (publish_batch) */
		if (batch_since != 0 && (TimestampTz) batch_since < before)
			waited = true;
		workflow_runner_id(i, id, sizeof(id));
		live[nlive] = CStringGetTextDatum(id);
		since[nlive] = TimestampTzGetDatum(started_at);
		nlive++;
	}

	/*
	 * Only then is a takeover worth the query, which scans the running jobs
	 * (the dead versions of finished ones included, until vacuum).
	 */
	if (!waited)
		return 0;

	if (plan == NULL)
	{
		Oid			argtypes[6] = {TEXTOID, INT4OID, INT8ARRAYOID, INTERVALOID,
		TEXTARRAYOID, TIMESTAMPTZARRAYOID};

		workflow_keep_plan(&plan, "SELECT " JOB_COLUMNS " FROM workflow._runner_takeover($1, $2, $3, $4, $5, $6)", 6, argtypes);
	}
	after = palloc0(sizeof(Interval));
	after->time = TAKEOVER_AFTER_MS * 1000;
	values[0] = CStringGetTextDatum(my_runner_id);
	values[1] = Int32GetDatum(limit);
	values[2] = PointerGetDatum(construct_array(busy, nbusy, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[3] = IntervalPGetDatum(after);
	values[4] = PointerGetDatum(construct_array(live, nlive, TEXTOID, -1, false, TYPALIGN_INT));
	values[5] = PointerGetDatum(construct_array(since, nlive, TIMESTAMPTZOID, 8, true,
												TYPALIGN_DOUBLE));
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "workflow runner could not take over claimed jobs");
	return collect_claims(jobs, limit, GetCurrentTransactionStartTimestamp());
}

/*
 * Run the current task of every job of the batch, each in a subtransaction
 * of one transaction, and commit them together.  Jobs that stay ours at
 * their next SQL task are returned in `next'.  An error of one job is that
 * job's (run_step); an error of the batch as a whole (writing the
 * successes, the commit) undoes every job of the batch, which are then
 * handed back to the queue, untouched, in a fresh transaction.
 */
static int
run_batch(ClaimedJob *jobs, int n, ClaimedJob *next)
{
	MemoryContext batch_context = CurrentMemoryContext;
	volatile int nnext = 0;
	int			check_ms;

	current_batch = jobs;
	current_nbatch = n;
	/* the watchdog of canceled tasks (a few checks per grace period) */
	check_ms = Max(Min(workflow_cancel_grace_period / 10, 500), 10);
	enable_timeout_every(watchdog_timeout,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), check_ms),
						 check_ms);

	PG_TRY();
	{
		int			i;
		StepNext	step_next;

		workflow_begin_spi();
		bound_lock_waits(GUARD_LOCK_TIMEOUT);
		publish_batch(jobs, n);
		for (i = 0; i < n; i++)
		{
			/* starting the last one: nothing left to take over */
			if (i == n - 1)
				pg_atomic_write_u64(&my_slot->batch_claimed_at, 0);
			if (shutdown_requested || leaving())
			{
				/* not started: hand it back (untouched, when leaving) */
				bool		still_running;

				(void) record_isolated(&jobs[i], shutdown_requested ?
									   WF_OUTCOME_RELEASE : WF_OUTCOME_RETURN,
									   0, &still_running);
				continue;
			}
			step_next = run_step(&jobs[i]);
			/* outside the job's subtransaction, which has ended */
			lock_success(&jobs[i]);
			if (step_next == STEP_CONTINUE)
				next[nnext++] = jobs[i];
			/* large outputs: written before the batch ends */
			if (pending_bytes > FLUSH_OUTPUT_BYTES)
				flush_successes(next, nnext);
		}
		flush_successes(next, nnext);
		workflow_end_spi(true);
		workflow_crash_record_note(my_slot_number, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			i;

		HOLD_INTERRUPTS();
		workflow_task_running = false;
		npending = 0;
		pending_bytes = 0;
		pg_atomic_write_u64(&my_slot->job_id, 0);
		pg_atomic_write_u64(&my_slot->batch_claimed_at, 0);
		MemoryContextSwitchTo(batch_context);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		QueryCancelPending = false;
		RESUME_INTERRUPTS();
		disable_timeout(watchdog_timeout, false);

		/*
		 * Nothing of the batch was kept: no job failed, each is handed back
		 * as it was (guarded by its lease, so a job canceled meanwhile is
		 * left alone).
		 */
		workflow_begin_spi();
		for (i = 0; i < n; i++)
		{
			bool		still_running;

			(void) record_isolated(&jobs[i], WF_OUTCOME_RETURN, 0, &still_running);
		}
		workflow_end_spi(true);
		workflow_crash_record_note(my_slot_number, NULL);

		/*
		 * Never loop hot on a persistent error: a second before the next
		 * claim, unless asked to stop (the latch may have been set long
		 * before, by the watchdog's alarms or a wake-up).
		 */
		{
			TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);

			for (;;)
			{
				long		left;

				ResetLatch(MyLatch);
				left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
				if (shutdown_requested || left <= 0)
					break;
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 left, PG_WAIT_EXTENSION);
				CHECK_FOR_INTERRUPTS();
				workflow_worker_reload_if_needed();
			}
		}
		nnext = 0;
		FreeErrorData(edata);
	}
	PG_END_TRY();

	disable_timeout(watchdog_timeout, false);
	current_batch = NULL;
	current_nbatch = 0;
	return nnext;
}

/*
 * On shutdown (release) or when leaving for another database (return):
 * hand jobs that are still ours back to the queue.
 */
static void
release_jobs(ClaimedJob *jobs, int n, WorkflowOutcome outcome)
{
	int			i;
	bool		still_running;

	workflow_begin_spi();
	for (i = 0; i < n; i++)
		(void) record_isolated(&jobs[i], outcome, 0, &still_running);
	workflow_end_spi(true);
}

/*
 * Whether the launcher asked this runner to leave its database, so that
 * the slot goes to another one (src/launcher.c).
 */
static bool
leaving(void)
{
	return pg_atomic_read_u32(&my_slot->leave) != 0;
}

/*
 * Whether the database has the type workflow.outcome.  Until ALTER
 * EXTENSION workflow UPDATE, a database of version 1.0 has
 * _runner_record(..., p_outcome text, ...) instead, which takes the same
 * labels (README, "Upgrading": the runners go on with 1.0's functions).
 */
static bool
outcome_type_exists(void)
{
	Oid			nsp = get_namespace_oid("workflow", true);

	return OidIsValid(nsp) &&
		OidIsValid(GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
								   CStringGetDatum("outcome"), ObjectIdGetDatum(nsp)));
}

/*
 * Record an outcome through workflow._runner_record(), which is passed the
 * label of workflow.outcome that names it.  Returns true when the guard
 * held (the job was still ours), and sets *still_running when the job
 * stays claimed by us at its next SQL task.  A row another transaction
 * holds for longer than GUARD_LOCK_TIMEOUT raises lock_not_available,
 * which the caller turns into a hand-back.
 */
static bool
record_outcome(ClaimedJob *job, WorkflowOutcome outcome, Datum output, Datum error,
			   TimestampTz started, int64 delay_ms, Datum info, bool *still_running)
{
	static SPIPlanPtr typed_plan = NULL;
	static SPIPlanPtr text_plan = NULL;	/* the objects of 1.0 */
	Oid			argtypes[8] = {INT8OID, INT8OID, TEXTOID, JSONBOID, JSONBOID,
	TIMESTAMPTZOID, INTERVALOID, JSONBARRAYOID};
	SPIPlanPtr	plan;
	Datum		values[8];
	char		nulls[8];
	Interval   *delay;

	Assert((int) outcome < WF_NUM_OUTCOMES);
	if (outcome_type_exists())
		plan = workflow_keep_plan(&typed_plan, "SELECT execution::text, runner_id, " JOB_COLUMNS " FROM "
								  "workflow._runner_record($1, $2, $3::workflow.outcome, $4, $5, $6, $7, $8) "
								  "WHERE id IS NOT NULL", 8, argtypes);
	else
		plan = workflow_keep_plan(&text_plan, "SELECT execution::text, runner_id, " JOB_COLUMNS " FROM "
								  "workflow._runner_record($1, $2, $3, $4, $5, $6, $7, $8) "
								  "WHERE id IS NOT NULL", 8, argtypes);

	/* requeue() bounds the delay; saturate anyway, never overflow */
	delay = palloc0(sizeof(Interval));
	delay->time = Min(saturating_mul(Max(delay_ms, 0), 1000), WF_MAX_INTERVAL_USECS);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(job->id);
	values[1] = Int64GetDatum(job->lease);
	values[2] = CStringGetTextDatum(WorkflowOutcomeNames[outcome]);
	values[3] = output;
	nulls[3] = output == (Datum) 0 ? 'n' : ' ';
	values[4] = error;
	nulls[4] = error == (Datum) 0 ? 'n' : ' ';
	values[5] = TimestampTzGetDatum(started);
	values[6] = IntervalPGetDatum(delay);
	values[7] = info;
	nulls[7] = info == (Datum) 0 ? 'n' : ' ';

	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "workflow runner could not record the outcome of job %lld", (long long) job->id);
	*still_running = false;
	if (SPI_processed != 1)
		return false;
	{
		char	   *execution = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *runner = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		*still_running = execution != NULL && strcmp(execution, "running") == 0 &&
			runner != NULL && strcmp(runner, my_runner_id) == 0;
		if (*still_running)
		{
			JobColumns	columns;

			/* at its next task, same lease */
			find_job_columns(SPI_tuptable->tupdesc, &columns);
			read_job(job, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, &columns);
		}
	}
	return true;
}

/*
 * Why the job's creator cannot run its task — dropped, or no longer
 * allowed to log in — as a jsonb error, or 0 when it can.  A task never
 * runs as anyone else.
 */
static Datum
creator_problem(Oid owner)
{
	HeapTuple	tup;
	StringInfoData buf;
	bool		canlogin;
	char	   *name;

	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	initStringInfo(&buf);
	if (!HeapTupleIsValid(tup))
	{
		appendStringInfo(&buf, "{\"sqlstate\": \"28000\", \"message\": "
						 "\"role with OID %u that created the job does not exist\", "
						 "\"hint\": \"A job runs as its creator only; create the job again as an existing role.\"}",
						 owner);
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	}
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	name = pstrdup(NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
	ReleaseSysCache(tup);
	if (canlogin)
		return (Datum) 0;
	appendStringInfoString(&buf, "{\"sqlstate\": \"28000\", \"message\": ");
	escape_json(&buf, psprintf("role \"%s\" that created the job cannot log in", name));
	appendStringInfoString(&buf, ", \"hint\": \"A job runs as its creator only; give the role LOGIN again, or create the job again as another role.\"}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * Whether the claim of a job still holds (same lease, still running):
 * something else may have happened to it since it was claimed (canceled,
 * taken over by another runner).  Read with a fresh snapshot (guard.c):
 * the batch's snapshot is older than a takeover or a cancel committed
 * while an earlier task of the batch ran.
 */
static bool
claim_holds(ClaimedJob *job)
{
	return workflow_job_is_ours(job->id, job->lease, &job->tid, WF_GUARD_READ, NULL, NULL);
}

/*
 * The context of the job's task (as workflow.job_context() builds it), in
 * the caller's memory context.  Reads the job, and sets *holds to whether
 * its claim still holds; returns 0 when it does not.
 */
static Datum
job_context(ClaimedJob *job, WorkflowTaskDef *step, bool *holds)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[4];
	bool		isnull;
	Datum		context;

	if (plan == NULL)
	{
		Oid			argtypes[4] = {INT8OID, INT8OID, TEXTOID, BOOLOID};

		/* a child job's context is workflow.job_context()'s alone */
		workflow_keep_plan(&plan, "SELECT CASE WHEN j.parent_id IS NOT NULL THEN workflow.job_context(j) "
						   "ELSE pg_catalog.jsonb_build_object("
						   "  'job', pg_catalog.jsonb_build_object('id', j.id, 'workflow', j.workflow, "
						   "        'version', j.version, 'params', j.params, 'target', j.target, "
						   "        'attempt', j.attempt), "
						   "  'task', pg_catalog.jsonb_build_object('name', $3, 'attempt', j.task_attempt), "
						   "  'results', CASE WHEN $4 THEN coalesce("
						   "        (SELECT pg_catalog.jsonb_object_agg(r.task, r.output ORDER BY r.id) "
						   "           FROM workflow.task_runs r "
						   "          WHERE r.job_id = j.id AND r.job_attempt = j.attempt "
						   "            AND r.status = 'succeeded'), '{}'::jsonb) "
						   "        ELSE '{}'::jsonb END) END "
						   "  FROM workflow.jobs j "
						   " WHERE " JOB_IS_OURS, 4, argtypes);
	}
	values[0] = Int64GetDatum(job->id);
	values[1] = Int64GetDatum(job->lease);
	values[2] = CStringGetTextDatum(step->name);
	/* no task of this attempt can have succeeded before the first one */
	values[3] = BoolGetDatum(!(job->phase == WF_PHASE_CHAIN && job->step == 0));
	/* a fresh snapshot, as in claim_holds() */
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "workflow runner could not build the context of job %lld", (long long) job->id);
	*holds = SPI_processed == 1;
	if (!*holds)
		return (Datum) 0;
	context = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return SPI_datumTransfer(context, false, -1);
}

/*
 * A task succeeded, with nothing else to record (no progress information):
 * the common outcome, recorded for the whole batch at once.  Inside the
 * task's subtransaction, the job is checked to be still ours, guarded by
 * the lease like workflow._runner_record(): when the guard fails the
 * caller rolls the task back.  Its row must then stay locked by this
 * transaction, so that nothing changes the job before the batch commits:
 * when another transaction holds it (a role's open transaction, a cancel
 * not yet committed), the row is locked here, waiting at most
 * GUARD_LOCK_TIMEOUT (then lock_not_available, and the job is handed back,
 * job_fault); else lock_success() locks it in the batch's transaction once
 * the subtransaction has ended.  The success itself is recorded for every
 * job of the batch by one execution of workflow._tasks_succeeded just
 * before the commit (flush_successes).  A job whose next task is an SQL
 * task stays ours at that task (*still_running).
 */
static bool
hold_success(ClaimedJob *job, WorkflowTaskDef *step, Datum output,
			 TimestampTz started, bool *still_running)
{
	PendingSuccess *p;
	bool		locked;
	ItemPointerData found;

	*still_running = false;
	if (!workflow_job_is_ours(job->id, job->lease, &job->tid, WF_GUARD_LOCK_IF_HELD,
							  &locked, &found))
		return false;

	Assert(npending < MAX_BATCH);
	p = &pending[npending++];
	p->unlocked = !locked;
	p->tid = found;
	p->id = job->id;
	p->lease = job->lease;
	p->output = output;
	if (output != (Datum) 0)
		pending_bytes += VARSIZE_ANY(DatumGetPointer(output));
	p->started = started;
	p->finished = GetCurrentTimestamp();

	if (WF_KIND_IN_SERVER(step->next_kind))
	{
		job->step++;
		job->task_attempt = 1;
		job->in_fallback = false;
		/* the record sets claimed_at later than this */
		job->claimed_at = p->finished;
		/* and makes a new version of the row (flush_successes) */
		ItemPointerSetInvalid(&job->tid);
		*still_running = true;
	}
	return true;
}

/*
 * After a job's subtransaction ended: lock the row of the success
 * hold_success() kept for it, if that was left to the batch's transaction
 * (see src/guard.c: the record then makes no MultiXact), waiting for a
 * lock another transaction took meanwhile (a concurrent claim's, for a
 * millisecond).  Raises an error, which undoes the batch, when the row
 * changed in between or the wait exceeds GUARD_LOCK_TIMEOUT.
 */
static void
lock_success(ClaimedJob *job)
{
	PendingSuccess *p;

	if (npending == 0)
		return;
	p = &pending[npending - 1];
	if (p->id != job->id || !p->unlocked)
		return;
	workflow_job_lock(p->id, p->lease, &p->tid);
	p->unlocked = false;
}

/*
 * Record what hold_success() kept for the batch, by the one author of the
 * edge, workflow._tasks_succeeded, with the next SQL tasks kept: one
 * statement for the batch.  The rows are locked by this transaction since.
 * The jobs kept for their next task, kept[0 .. nkept - 1] in batch order,
 * learn where their row's new version is.
 */
static void
flush_successes(ClaimedJob *kept, int nkept)
{
	static WorkflowFunctionPlan plan;
	Datum	   *ids, *leases, *outputs, *starts, *ends;
	bool	   *output_nulls;
	Datum		values[7];
	int			i;
	int			k;
	int			dims[1];
	int			lbs[1] = {1};

	if (npending == 0)
		return;

	ids = palloc(sizeof(Datum) * npending);
	leases = palloc(sizeof(Datum) * npending);
	outputs = palloc(sizeof(Datum) * npending);
	output_nulls = palloc(sizeof(bool) * npending);
	starts = palloc(sizeof(Datum) * npending);
	ends = palloc(sizeof(Datum) * npending);
	for (i = 0; i < npending; i++)
	{
		PendingSuccess *p = &pending[i];

		ids[i] = Int64GetDatum(p->id);
		leases[i] = Int64GetDatum(p->lease);
		outputs[i] = p->output;
		output_nulls[i] = p->output == (Datum) 0;
		starts[i] = TimestampTzGetDatum(p->started);
		ends[i] = TimestampTzGetDatum(p->finished);
	}
	dims[0] = npending;
	values[0] = PointerGetDatum(construct_array(ids, npending, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(leases, npending, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_md_array(outputs, output_nulls, 1, dims, lbs,
												   JSONBOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(starts, npending, TIMESTAMPTZOID, 8, true,
												TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_array(ends, npending, TIMESTAMPTZOID, 8, true,
												TYPALIGN_DOUBLE));
	values[5] = BoolGetDatum(true);
	values[6] = BoolGetDatum(false);

	if (SPI_execute_plan(workflow_keep_function_plan(&plan, WF_TASKS_SUCCEEDED),
						 values, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) npending)
		elog(ERROR, "workflow runner could not record the outcome of %d tasks", npending);

	/* the rows come in batch order, and so do the kept jobs */
	k = 0;
	for (i = 0; i < npending; i++)
	{
		bool		isnull;
		Datum		tid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6, &isnull);
		int64		id;

		if (isnull)
			continue;
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		while (k < nkept && kept[k].id != id)
			k++;
		if (k == nkept)
			break;
		ItemPointerCopy((ItemPointer) DatumGetPointer(tid), &kept[k].tid);
		k++;
	}
	npending = 0;
	pending_bytes = 0;
}

/*
 * Run the current task of a claimed job inside the batch's transaction,
 * in the job's own subtransaction: the check that the job is still ours,
 * the body, and the record of its outcome, so that the task's effects and
 * the job's progress are kept or undone together.  An error anywhere in
 * there (the runner's bookkeeping of this job, its context query) rolls
 * back this job's work only and is handled by job_fault().
 */
static StepNext
run_step(ClaimedJob *job)
{
	MemoryContext context = CurrentMemoryContext;
	volatile StepNext next = STEP_DONE;

	PG_TRY();
	{
		next = run_step_guarded(job);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		workflow_task_running = false;
		pg_atomic_write_u64(&my_slot->job_id, 0);
		debug_query_string = NULL;
		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		/* whatever of this job's subtransaction is open */
		workflow_task_finish(false);
		/* and a success it held is no longer held */
		if (npending > 0 && pending[npending - 1].id == job->id)
		{
			npending--;
			if (pending[npending].output != (Datum) 0)
				pending_bytes -= VARSIZE_ANY(DatumGetPointer(pending[npending].output));
		}
		next = job_fault(job, edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return next;
}

/*
 * Before a task's body runs: make sure the job is still ours (the context
 * query tells that too, for code that uses $1), and decide what needs no
 * body: a job past its deadline, a workflow dropped meanwhile, a wait task,
 * an external task reached through a stale path, a creator that can no
 * longer log in.  Returns true when the body is to run, with its context
 * in *context; else the job is dealt with and *next says what follows.
 */
static bool
ready_to_run(ClaimedJob *job, WorkflowTaskDef *step, TimestampTz started,
			 Datum *context, StepNext *next)
{
	Datum		error;

	*context = (Datum) 0;
	*next = STEP_DONE;
	if (step != NULL && step->uses_context)
	{
		bool		holds;

		*context = job_context(job, step, &holds);
		if (!holds)
		{
			workflow_task_finish(false);
			return false;		/* canceled or handed over meanwhile */
		}
	}
	else if (TimestampDifferenceExceeds(job->claimed_at, started, TRUST_CLAIM_MS) &&
			 !claim_holds(job))
	{
		workflow_task_finish(false);
		return false;
	}

	if (job->deadline <= GetCurrentTransactionStartTimestamp())
	{
		*next = record_here(job, WF_OUTCOME_TIMEOUT, 0, started);
		return false;
	}
	if (step == NULL)
	{
		workflow_task_finish(false);
		return false;			/* its workflow was dropped meanwhile */
	}
	if (WF_KIND_WAITS(step->kind) && step->body == NULL)
	{
		*next = record_here(job, WF_OUTCOME_WAIT_STEP, 0, started);
		return false;
	}
	if (step->body == NULL)
	{
		/* an external task reached through a stale path: hand it back */
		*next = record_here(job, WF_OUTCOME_RELEASE, 0, started);
		return false;
	}

	/* the creator must still exist and be able to log in */
	error = creator_problem(job->owner);
	if (error != (Datum) 0)
	{
		*next = record_here(job, WF_OUTCOME_FATAL, error, started);
		return false;
	}
	return true;
}

/*
 * The time a task's body may take, in milliseconds (0: no limit): the
 * smaller of the task's timeout and what is left of the job's.
 */
static int
task_timeout_ms(ClaimedJob *job, WorkflowTaskDef *step, TimestampTz started)
{
	int64		timeout_ms;

	timeout_ms = step->timeout_us <= 0 ? 0 : saturating_add(step->timeout_us, 999) / 1000;
	if (!TIMESTAMP_NOT_FINITE(job->deadline))
	{
		int64		left_ms = saturating_add(saturating_add(job->deadline, -started), 999) / 1000;

		/* a timeout below 1 ms has already passed: give the task 1 ms */
		if (left_ms < 1)
			left_ms = 1;
		if (timeout_ms == 0 || left_ms < timeout_ms)
			timeout_ms = left_ms;
	}
	return (int) Min(timeout_ms, INT_MAX);
}

/*
 * Run the body of the job's task, marked in shared memory as the job a
 * cancel may interrupt, and return what it did in *res; the value of the
 * slot's interrupt_job when it ended is returned.
 */
static uint64
run_body(ClaimedJob *job, WorkflowTaskDef *step, Datum context, int timeout_ms,
		 WorkflowTaskResult *res)
{
	char		activity[256];

	snprintf(activity, sizeof(activity), "workflow job %lld: %s/%s",
			 (long long) job->id, step->workflow, step->name);
	pgstat_report_activity(STATE_RUNNING, activity);
	debug_query_string = step->body;

	/*
	 * From here a cancel is meant for the body: the flag first, then the
	 * job id that cancel_job() looks for.
	 */
	pg_atomic_write_u64(&my_slot->interrupt_job, 0);
	running_job = job->id;
	cancel_noted_at = 0;
	workflow_task_running = true;
	pg_memory_barrier();
	pg_atomic_write_u64(&my_slot->job_id, (uint64) job->id);
	if (shutdown_requested)
	{
		cancel_noted_at = GetCurrentTimestamp();
		InterruptPending = true;
		QueryCancelPending = true;
	}
	/* what a crash would interrupt (src/crashrecord.c) */
	{
		WorkflowCrashRecord what = {0};

		what.job_id = job->id;
		what.lease = job->lease;
		what.phase = job->phase;
		what.step = job->step;
		what.attempt = job->attempt;
		what.task_attempt = job->task_attempt;
		workflow_crash_record_note(my_slot_number, &what);
	}
	workflow_execute_task(job->id, step, context, job->owner, timeout_ms, res);
	/* workflow_execute_task() ended the body and dropped late cancels */
	workflow_task_running = false;
	pg_atomic_write_u64(&my_slot->job_id, 0);
	debug_query_string = NULL;
	return pg_atomic_read_u64(&my_slot->interrupt_job);
}

/*
 * The outcome of a body that failed with `sqlerrcode': a cancel meant for
 * this job by a committed transaction (none: the caller just drops the
 * job, *dropped), the statement timeout armed for what was left of the
 * job's time (timeout), a shutdown or an interrupt meant for another job
 * of the batch (a hand-back), or the task's own failure.
 */
static WorkflowOutcome
failure_outcome(ClaimedJob *job, int sqlerrcode, uint64 interrupted, bool *dropped)
{
	*dropped = false;
	if (sqlerrcode != ERRCODE_QUERY_CANCELED)
		return WF_OUTCOME_FAILED;
	if (interrupted == (uint64) job->id)
	{
		/* canceled or timed out by a committed transaction */
		*dropped = true;
		return WF_OUTCOME_FAILED;
	}
	if (!shutdown_requested && interrupted == 0 && !TIMESTAMP_NOT_FINITE(job->deadline) &&
		GetCurrentTimestamp() >= job->deadline)
		return WF_OUTCOME_TIMEOUT;
	if (shutdown_requested || interrupted != 0)
		return WF_OUTCOME_RELEASE;
	return WF_OUTCOME_FAILED;
}

/*
 * The work of run_step() that may raise an error.
 */
static StepNext
run_step_guarded(ClaimedJob *job)
{
	WorkflowTaskDef *step;
	Datum		context;
	TimestampTz started;
	WorkflowTaskResult res;
	WorkflowOutcome outcome;
	bool		still_running = false;
	bool		dropped;
	uint64		interrupted;
	StepNext	next;

	started = GetCurrentTimestamp();
	workflow_task_begin();
	step = workflow_task_lookup(job->workflow_id, job->phase, job->step,
								job->in_fallback, job->owner);
	if (!ready_to_run(job, step, started, &context, &next))
		return next;

	interrupted = run_body(job, step, context, task_timeout_ms(job, step, started), &res);

	if (res.ok)
	{
		/* record inside the task's subtransaction, then keep or undo it */
		bool		kept;

		outcome = res.request == WF_TASK_REQUEUE ? WF_OUTCOME_REQUEUE :
			res.request == WF_TASK_WAIT ? WF_OUTCOME_WAIT : WF_OUTCOME_SUCCEEDED;
		/* the SQL of a wait or a control-flow entry gave its value */
		if (WF_KIND_WAITS(step->kind))
			outcome = WF_OUTCOME_WAIT_STEP;
		if (outcome == WF_OUTCOME_SUCCEEDED && res.info == (Datum) 0)
			kept = hold_success(job, step, res.output, started, &still_running);
		else
			kept = record_outcome(job, outcome, res.output, res.error, started,
								  res.requeue_ms, res.info, &still_running);
		/* not ours anymore (canceled, timed out): the task's effects go */
		workflow_task_finish(kept);
		return (kept && still_running) ? STEP_CONTINUE : STEP_DONE;
	}

	/* the body failed: its subtransaction is rolled back */
	outcome = failure_outcome(job, res.sqlerrcode, interrupted, &dropped);
	if (dropped)
		return STEP_DONE;

	/* the record of a failure: a subtransaction of its own */
	workflow_task_begin();
	(void) record_outcome(job, outcome, res.output, res.error, started,
						  res.requeue_ms, res.info, &still_running);
	workflow_task_finish(true);
	return still_running ? STEP_CONTINUE : STEP_DONE;
}

/*
 * Record an outcome decided before any task ran, inside the job's open
 * subtransaction, and keep it.
 */
static StepNext
record_here(ClaimedJob *job, WorkflowOutcome outcome, Datum error, TimestampTz started)
{
	bool		still_running;

	(void) record_outcome(job, outcome, 0, error, started, 0, 0, &still_running);
	workflow_task_finish(true);
	return still_running ? STEP_CONTINUE : STEP_DONE;
}

/*
 * An error raised while the runner worked on one job (outside the task's
 * body, whose errors are the task's), after that job's subtransaction was
 * rolled back.  It is that job's alone:
 *
 *	- its row is locked by another transaction (GUARD_LOCK_TIMEOUT): hand the job back
 *	  once the row is free, no attempt counted;
 *	- a cancel (a shutdown, or one that reached the bookkeeping anyway):
 *	  hand the job back, no attempt counted -- unless a committed
 *	  cancel_job() or timeout meant this job, which is then done with;
 *	- anything else (an overflow, a failing context query): a failed
 *	  attempt of this job, with the runner's error.
 *
 * The other jobs of the batch keep their outcomes.
 */
static StepNext
job_fault(ClaimedJob *job, ErrorData *edata)
{
	bool		still_running;

	if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
	{
		ereport(LOG,
				(errmsg("workflow runner hands job %lld back: its row is locked by another transaction",
						(long long) job->id)));
		defer_job(job);
		return STEP_DONE;
	}
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || shutdown_requested)
	{
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			pg_atomic_read_u64(&my_slot->interrupt_job) == (uint64) job->id)
			return STEP_DONE;	/* canceled or timed out by a committed transaction */
		(void) record_isolated(job, WF_OUTCOME_RETURN, 0, &still_running);
		return STEP_DONE;
	}

	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("workflow runner failed the task of job %lld: %s",
					(long long) job->id, edata->message ? edata->message : "unknown error")));
	(void) record_isolated(job, WF_OUTCOME_FAILED,
						   runner_error(edata->sqlerrcode, edata->message, edata->detail),
						   &still_running);
	return STEP_DONE;
}

/*
 * An error of the runner (not of the task's code), as stored in
 * task_runs.error: marked "runner": true.
 */
static Datum
runner_error(int sqlerrcode, const char *message, const char *detail)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"sqlstate\": ");
	escape_json(&buf, unpack_sql_state(sqlerrcode));
	appendStringInfoString(&buf, ", \"message\": ");
	escape_json(&buf, message ? message : "unknown error");
	if (detail != NULL)
	{
		appendStringInfoString(&buf, ", \"detail\": ");
		escape_json(&buf, detail);
	}
	appendStringInfoString(&buf, ", \"runner\": true}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * Record an outcome for a job in a subtransaction of its own, never
 * raising an error: if the record fails, the job is handed back instead
 * (WF_OUTCOME_RETURN: the queue at the same task, no run recorded, no attempt
 * counted); if even that fails, or the row is locked by another
 * transaction, the job goes to the deferred list.  Needs an open
 * transaction and SPI.
 */
static bool
record_isolated(ClaimedJob *job, WorkflowOutcome outcome, Datum error, bool *still_running)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool kept = false;

	*still_running = false;
	PG_TRY();
	{
		workflow_task_begin();
		kept = record_outcome(job, outcome, 0, error, GetCurrentTimestamp(), 0, 0,
							  still_running);
		workflow_task_finish(true);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		workflow_task_finish(false);
		*still_running = false;
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			defer_job(job);
		else
		{
			ereport(LOG,
					(errcode(edata->sqlerrcode),
					 errmsg("workflow runner could not record outcome \"%s\" of job %lld: %s",
							WorkflowOutcomeNames[outcome], (long long) job->id,
							edata->message ? edata->message : "unknown error")));
			if (outcome != WF_OUTCOME_RETURN)
				(void) record_isolated(job, WF_OUTCOME_RETURN, 0, still_running);
			else
				defer_job(job);
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return kept;
}

/*
 * Bound, for the rest of this transaction, how long the runner's own
 * statements wait for a row lock (GUARD_LOCK_TIMEOUT, or
 * DEFERRED_LOCK_TIMEOUT for the jobs deferred already); the task bodies
 * run with the configured lock_timeout again (src/task.c).  The rows the
 * runner locks are its jobs': another runner holds one only for the few
 * milliseconds of a claim or takeover, which is worth waiting for (the
 * guard then sees the new lease and drops the job), while a role's open
 * transaction may hold one for ever: after the timeout that job alone is
 * handed back later (lock_not_available, see job_fault()).
 */
static void
bound_lock_waits(const char *timeout)
{
	(void) set_config_option("lock_timeout", timeout,
							 PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * Remember to hand a job back later: its row is locked by another
 * transaction.  Meanwhile it stays claimed by this runner (a lease is
 * never lost), out of its batches.
 */
static void
defer_job(ClaimedJob *job)
{
	int			i;

	for (i = 0; i < ndeferred; i++)
		if (deferred[i].id == job->id)
		{
			deferred[i] = *job;
			return;
		}
	if (ndeferred >= MAX_BATCH)
	{
		ereport(WARNING,
				(errmsg("workflow runner cannot hand job %lld back: too many jobs whose rows are locked",
						(long long) job->id),
				 errdetail("The job stays running until this runner exits; then its on_stale policy applies.")));
		return;
	}
	deferred[ndeferred++] = *job;
}

/*
 * Hand back the deferred jobs whose rows are free now, in a transaction of
 * its own, at most once per workflow.run_interval.
 */
static void
retry_deferred(void)
{
	static TimestampTz last = 0;
	ClaimedJob *jobs;
	int			n = ndeferred;
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	if (!shutdown_requested && !TimestampDifferenceExceeds(last, now, workflow_run_interval))
		return;
	last = now;
	jobs = palloc(sizeof(ClaimedJob) * n);
	memcpy(jobs, deferred, sizeof(ClaimedJob) * n);
	ndeferred = 0;
	workflow_begin_spi();
	/* the rows were locked a moment ago: do not wait long for them again */
	bound_lock_waits(DEFERRED_LOCK_TIMEOUT);
	for (i = 0; i < n; i++)
	{
		bool		still_running;

		/* still locked: deferred again */
		(void) record_isolated(&jobs[i], WF_OUTCOME_RETURN, 0, &still_running);
	}
	workflow_end_spi(true);
}

/*
 * Exit callback (before_shmem_exit, so it runs before the connection's own
 * clean-up): after the watchdog escalated, the batch's transaction is
 * gone, with the work of every job in it.  In a transaction of its own --
 * as PostgreSQL's own exit callbacks do (RemoveTempRelationsCallback) --
 * the task that ignored its cancel gets a failed attempt (or its job's
 * timeout), and every other job of the batch, and the deferred ones, are
 * handed back untouched.  Rows locked by anyone else are skipped (no wait
 * is possible here): such a job, or everything if this fails, stays
 * running under this runner, and its on_stale policy applies once the
 * runner's next incarnation registers.
 */
static void
runner_exit_handback(int code, Datum arg)
{
	ClaimedJob *jobs;
	int			n = 0;
	Datum	   *ids;
	Datum		values[1];
	Oid			argtypes[1] = {INT8ARRAYOID};
	int			i;
	uint64		k;

	if (escalated_job == 0 || WorkflowShmem == NULL)
		return;
	disable_all_timeouts(false);
	AbortOutOfAnyTransaction();

	ereport(LOG,
			(errmsg("workflow runner terminated: the task of job %lld did not stop within workflow.cancel_grace_period (%d ms) after it was canceled",
					(long long) escalated_job, workflow_cancel_grace_period)));

	jobs = palloc(sizeof(ClaimedJob) * (current_nbatch + ndeferred));
	for (i = 0; i < current_nbatch; i++)
		jobs[n++] = current_batch[i];
	for (i = 0; i < ndeferred; i++)
		jobs[n++] = deferred[i];
	if (n == 0)
		return;

	workflow_begin_spi();
	ids = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		ids[i] = Int64GetDatum(jobs[i].id);
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	if (SPI_execute_with_args("SELECT id FROM workflow.jobs "
							  " WHERE id = ANY ($1) AND (execution = 'running') IS TRUE "
							  "   FOR NO KEY UPDATE SKIP LOCKED",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "workflow runner could not lock the jobs of its batch");
	{
		SPITupleTable *locked = SPI_tuptable;
		uint64		nlocked = SPI_processed;

		for (i = 0; i < n; i++)
		{
			bool		free_row = false;
			bool		still_running;

			for (k = 0; k < nlocked; k++)
			{
				bool		isnull;

				if (DatumGetInt64(SPI_getbinval(locked->vals[k], locked->tupdesc, 1, &isnull)) ==
					jobs[i].id)
					free_row = true;
			}
			if (!free_row)
				continue;
			if (jobs[i].id == escalated_job)
			{
				bool		timed_out = !TIMESTAMP_NOT_FINITE(jobs[i].deadline) &&
					GetCurrentTimestamp() >= jobs[i].deadline;

				(void) record_outcome(&jobs[i], timed_out ? WF_OUTCOME_TIMEOUT : WF_OUTCOME_FAILED, 0,
									  runner_error(ERRCODE_QUERY_CANCELED,
												   "task did not stop within workflow.cancel_grace_period after it was canceled",
												   psprintf("The runner was terminated after %d ms.",
															workflow_cancel_grace_period)),
									  GetCurrentTimestamp(), 0, 0, &still_running);
			}
			else
				(void) record_outcome(&jobs[i], WF_OUTCOME_RETURN, 0, 0, GetCurrentTimestamp(),
									  0, 0, &still_running);
		}
	}
	workflow_end_spi(true);
}

/*
 * a + b, saturated at the bounds of int64.
 */
static int64
saturating_add(int64 a, int64 b)
{
	int64		r;

	if (pg_add_s64_overflow(a, b, &r))
		return (b > 0) ? PG_INT64_MAX : PG_INT64_MIN;
	return r;
}

/*
 * a * b, saturated at the bounds of int64.
 */
static int64
saturating_mul(int64 a, int64 b)
{
	int64		r;

	if (pg_mul_s64_overflow(a, b, &r))
		return ((a < 0) != (b < 0)) ? PG_INT64_MIN : PG_INT64_MAX;
	return r;
}
