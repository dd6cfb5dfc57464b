/*-------------------------------------------------------------------------
 *
 * poll.c
 *		workflow.poll_tasks(): external workers claim tasks of a type, in a
 *		batch, with an optional long poll woken at commit.
 *
 * The claim itself is SQL (workflow._claim_tasks: SKIP LOCKED, the
 * worker's domain first, lock by target).  When the caller asked to wait,
 * the backend registers as a waiter of the task type's queue
 * (src/wakeup.c) and resets its latch before each claim; when the claim
 * finds nothing it sleeps on its latch until a transaction that makes a
 * task of that type runnable commits, the next delayed task of the type
 * is due, or the wait ends, and then claims again.  There is no polling
 * loop: the backend wakes only for one of these (or a signal).
 *
 * Snapshots.  A long poll must not hold back the xmin horizon while it
 * sleeps.  A function cannot drop the snapshot its calling statement
 * holds; but when that statement reads nothing else with it — it is
 * `SELECT <columns> FROM workflow.poll_tasks(...)' and nothing more, in a
 * single-statement READ COMMITTED transaction — the old snapshot is never
 * used again once this function returns (the function materialises its
 * result).  Only then the backend's advertised xmin is cleared for the
 * sleep, as SnapshotResetXmin() does when no snapshot is left; the next
 * snapshot taken after the wake-up advertises a new one.  In any other
 * form of call the wait still works but keeps the statement's snapshot.
 * Each claim of a long poll runs in a subtransaction, rolled back when it
 * gets nothing, so the poll never sleeps holding row locks; nor does it
 * sleep holding a transaction id that a claim gave it (it returns empty
 * instead).  A transaction that had an id before the call keeps it while
 * the poll sleeps.
 *
 * Callers.  workflow.poll_tasks() is the C entry point of src/api.c, which
 * calls this function, workflow._poll_tasks(..., p_caller oid), with the
 * exact calling role: the worker id must be that role's (or new, and then
 * registered as that role's), checked before any wait and again when the
 * worker is registered after the claim.
 *
 * Arithmetic.  Times and intervals given by the caller are converted
 * without a signed overflow: an absurd wait is refused as out of range,
 * not wrapped around into an accepted one.  The conversion of an interval
 * to milliseconds, workflow_interval_ms(), is here and serves every
 * interval a user gives the extension (also workflow.requeue()'s delay,
 * src/task.c).
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_poll_tasks);

/* the longest long poll */
#define MAX_WAIT_MS (5 * 60 * 1000)
/* the largest batch */
#define MAX_BATCH 1000

/* what the caller asked for, checked by check_poll_arguments() */
typedef struct PollRequest
{
	text	   *task_type;
	text	   *worker_id;
	int32		count;
	Datum		domain;			/* text, or (Datum) 0 for none */
	Oid			caller;			/* the calling role (src/api.c) */
	int64		wait_ms;		/* 0: claim once, do not wait */
	TimestampTz deadline;		/* when the wait ends (set after the checks) */
} PollRequest;

static void check_poll_arguments(FunctionCallInfo fcinfo, PollRequest *req);
static void check_worker(const PollRequest *req);
static void check_names(const PollRequest *req);
static SPIPlanPtr prepare_claim(void);
static int	claim_once(SPIPlanPtr plan, const PollRequest *req, ReturnSetInfo *rsinfo);
static int	claim_in_subtransaction(SPIPlanPtr plan, const PollRequest *req,
									ReturnSetInfo *rsinfo, bool *stop);
static void wait_for_work(SPIPlanPtr plan, const PollRequest *req, bool may_clear_xmin,
						  ReturnSetInfo *rsinfo);
static long sleep_ms(const PollRequest *req);
static void touch_worker(const PollRequest *req);
static int64 ms_until(TimestampTz when);
static bool statement_reads_only_this_function(Oid fn_oid);
static bool is_public_entry_point(Oid funcid, Oid impl_oid);
static void clear_advertised_xmin(void);

/*
 * workflow._poll_tasks(task_type text, worker_id text, count int,
 *						wait interval, domain text, p_caller oid)
 * returns setof workflow.task: the implementation of workflow.poll_tasks
 * (src/api.c passes the calling role).  The worker is checked before any
 * wait, and registered or heartbeated after the claim.
 */
Datum
workflow_poll_tasks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PollRequest req;
	bool		may_clear_xmin;
	SPIPlanPtr	plan;

	check_poll_arguments(fcinfo, &req);

	workflow_require_shmem();
	/* the database of an external worker gets its sweeper (lease expiry) */
	workflow_database_note_listed();
	workflow_database_touch(false);
	InitMaterializedSRF(fcinfo, 0);

	req.deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), req.wait_ms);
	may_clear_xmin = req.wait_ms > 0 &&
		statement_reads_only_this_function(fcinfo->flinfo->fn_oid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "poll_tasks could not connect to SPI");
	check_worker(&req);
	check_names(&req);
	plan = prepare_claim();

	if (req.wait_ms == 0)
		(void) claim_once(plan, &req, rsinfo);
	else
		wait_for_work(plan, &req, may_clear_xmin, rsinfo);

	touch_worker(&req);
	SPI_finish();
	return (Datum) 0;
}

/*
 * Read the arguments into *req, refusing what needs no lookup: a missing
 * argument, a batch out of 1..MAX_BATCH, a wait out of 0..MAX_WAIT_MS.
 */
static void
check_poll_arguments(FunctionCallInfo fcinfo, PollRequest *req)
{
	if (PG_NARGS() != 6 || PG_ARGISNULL(5))
		elog(ERROR, "workflow._poll_tasks called without its caller");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task_type, worker_id, count and wait must not be null")));

	req->task_type = PG_GETARG_TEXT_PP(0);
	req->worker_id = PG_GETARG_TEXT_PP(1);
	req->count = PG_GETARG_INT32(2);
	req->wait_ms = workflow_interval_ms(PG_GETARG_INTERVAL_P(3));
	req->domain = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	req->caller = PG_GETARG_OID(5);

	if (req->count < 1 || req->count > MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("count must be between 1 and %d, not %d", MAX_BATCH, req->count)));
	if (req->wait_ms < 0 || req->wait_ms > MAX_WAIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must be between 0 and 5 minutes"),
				 errhint("Poll again after a wait ends; an idle worker costs nothing while it waits.")));
}

/*
 * The worker id must be a valid runner id, and the caller's or new (the
 * same checks as the other protocol functions, in SQL).
 */
static void
check_worker(const PollRequest *req)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];

	values[0] = PointerGetDatum(req->worker_id);
	values[1] = ObjectIdGetDatum(req->caller);
	if (SPI_execute_with_args("SELECT workflow._check_runner_id($1), "
							  "workflow._check_external_worker($1, $2)",
							  2, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the worker id");
}

/*
 * The task type and the domain (if any) must be valid names.
 */
static void
check_names(const PollRequest *req)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = PointerGetDatum(req->task_type);
	values[1] = req->domain;
	if (req->domain == (Datum) 0)
		nulls[1] = 'n';
	if (SPI_execute_with_args("SELECT workflow._check_name($1, 'task type', false), "
							  "workflow._check_name($2, 'domain', true)",
							  2, argtypes, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the task type");
}

/*
 * The claim, prepared once per call: a long poll runs it again at every
 * wake-up.
 */
static SPIPlanPtr
prepare_claim(void)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
	SPIPlanPtr	plan;

	plan = SPI_prepare("SELECT * FROM workflow._claim_tasks($1, $2, $3, $4)", 4, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the claim of tasks: %s",
			 SPI_result_code_string(SPI_result));
	return plan;
}

/*
 * Run the claim once and append what it got to the result; returns how
 * many tasks it claimed.
 */
static int
claim_once(SPIPlanPtr plan, const PollRequest *req, ReturnSetInfo *rsinfo)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	uint64		i;

	values[0] = PointerGetDatum(req->task_type);
	values[1] = PointerGetDatum(req->worker_id);
	values[2] = Int32GetDatum(req->count);
	values[3] = req->domain;
	if (req->domain == (Datum) 0)
		nulls[3] = 'n';
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim tasks");
	for (i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	return (int) SPI_processed;
}

/*
 * The long poll: claim, and while nothing was claimed and the wait has
 * not ended, sleep until a commit makes a task of this type runnable (or
 * the next delayed one is due), then claim again.  The backend announces
 * itself as a waiter of the queue and resets its latch before it looks,
 * so no wake-up between the look and the sleep is lost.  With
 * `may_clear_xmin' the advertised xmin is cleared for each sleep (see the
 * file header).
 */
static void
wait_for_work(SPIPlanPtr plan, const PollRequest *req, bool may_clear_xmin,
			  ReturnSetInfo *rsinfo)
{
	uint32		queue = workflow_queue_hash(text_to_cstring(req->task_type));

	for (;;)
	{
		long		remaining;
		bool		stop;

		/* announce, then look, then sleep: no wake-up is lost */
		workflow_wait_begin(queue);
		ResetLatch(MyLatch);

		if (claim_in_subtransaction(plan, req, rsinfo, &stop) > 0 || stop)
			break;
		remaining = sleep_ms(req);
		if (remaining <= 0)
			break;

		if (may_clear_xmin)
			clear_advertised_xmin();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, PG_WAIT_EXTENSION);
		workflow_wait_end();
		CHECK_FOR_INTERRUPTS();
	}
	workflow_wait_end();
}

/*
 * One claim of the long poll, in a subtransaction of its own.  A claim
 * that gets nothing may still hold row locks: SKIP LOCKED locks a row
 * before it checks it again at its latest version, so a job another
 * worker claimed and committed meanwhile stays locked though it is
 * skipped, and so does a job whose target turned out to be held.  Sleeping
 * with those locks would make that worker's report of the job wait for the
 * whole wait.  A claim that gets nothing is therefore rolled back, which
 * releases its locks; and when it gave the transaction its first
 * transaction id, which the rollback cannot take back, *stop is set: the
 * poll returns now, empty, rather than sleep holding an id (the worker
 * polls again in a new transaction).  An error of the claim (a cancel, a
 * statement timeout) rolls the subtransaction back here before it goes
 * up: left open, it would leave the session's implicit transaction
 * aborted for the next statement too.
 */
static int
claim_in_subtransaction(SPIPlanPtr plan, const PollRequest *req, ReturnSetInfo *rsinfo,
						bool *stop)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		had_xid = TransactionIdIsValid(GetTopTransactionIdIfAny());
	volatile int n = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		n = claim_once(plan, req, rsinfo);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	if (n > 0)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	*stop = n == 0 && !had_xid && TransactionIdIsValid(GetTopTransactionIdIfAny());
	return n;
}

/*
 * How long to sleep before claiming again: until the wait ends (0 when it
 * has), or until the next task of the type becomes due when that is
 * sooner, since no commit wakes us when a retry's backoff or a requeue's
 * delay ends.
 */
static long
sleep_ms(const PollRequest *req)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	long		remaining;
	bool		isnull;
	Datum		due;
	int64		until_due;

	remaining = (long) ms_until(req->deadline);
	if (remaining <= 0)
		return 0;

	values[0] = PointerGetDatum(req->task_type);
	values[1] = req->domain;
	if (req->domain == (Datum) 0)
		nulls[1] = 'n';
	if (SPI_execute_with_args("SELECT workflow._next_due($1, $2)", 2, argtypes,
							  values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for delayed tasks");
	if (SPI_processed != 1)
		return remaining;
	due = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return remaining;

	/* saturating: run_at may be far away, even infinite */
	until_due = ms_until(DatumGetTimestampTz(due));
	if (until_due < remaining)
		remaining = (long) Max(1, until_due + 1);
	return remaining;
}

/*
 * Register the worker id as the caller's, or write its heartbeat.
 */
static void
touch_worker(const PollRequest *req)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];

	values[0] = PointerGetDatum(req->worker_id);
	values[1] = ObjectIdGetDatum(req->caller);
	if (SPI_execute_with_args("SELECT workflow._external_heartbeat($1, $2)",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not register the worker");
}

/*
 * An interval in milliseconds: months count 30 days and days 24 hours (as
 * interval comparison does), and a fraction of a millisecond rounds away
 * from zero (a delay of 1 us still waits, a negative one stays negative).
 * The one conversion of an interval a user gives (poll_tasks' wait,
 * requeue's delay); the caller refuses what is out of its range.
 *
 * It cannot overflow: the days of any interval, at most about 6.7e10, are
 * at most 5.8e18 ms, and its time adds at most 9.3e15 ms, well within
 * int64.  An infinite interval (PostgreSQL 17 on) saturates at PG_INT64_MIN
 * or PG_INT64_MAX.
 */
int64
workflow_interval_ms(const Interval *iv)
{
	int64		ms;
	int64		rest;

#ifdef INTERVAL_NOT_FINITE
	if (INTERVAL_IS_NOBEGIN(iv))
		return PG_INT64_MIN;
	if (INTERVAL_IS_NOEND(iv))
		return PG_INT64_MAX;
#endif
	ms = ((int64) iv->month * DAYS_PER_MONTH + iv->day) * (USECS_PER_DAY / 1000) +
		iv->time / 1000;
	rest = iv->time % 1000;
	if (rest > 0 && ms >= 0)
		ms++;
	else if (rest < 0 && ms <= 0)
		ms--;
	return ms;
}

/*
 * Milliseconds from now until `when' (negative when it is past), saturating
 * for the infinite timestamps and for differences out of range.
 */
static int64
ms_until(TimestampTz when)
{
	int64		diff;

	if (TIMESTAMP_IS_NOEND(when))
		return PG_INT64_MAX;
	if (TIMESTAMP_IS_NOBEGIN(when))
		return PG_INT64_MIN;
	if (pg_sub_s64_overflow(when, GetCurrentTimestamp(), &diff))
		return when > 0 ? PG_INT64_MAX : PG_INT64_MIN;
	return diff / 1000;
}

/*
 * Clear the backend's advertised xmin for a sleep, as SnapshotResetXmin()
 * does when no snapshot is left.  Only when the running statement reads
 * nothing with its snapshot after this function returns
 * (statement_reads_only_this_function(), see the file header); the next
 * snapshot, taken after the wake-up, advertises a new xmin.
 */
static void
clear_advertised_xmin(void)
{
	InvalidateCatalogSnapshot();
	MyProc->xmin = InvalidTransactionId;
}

/*
 * Is `funcid' the public entry point whose implementation `impl_oid' is
 * (workflow.poll_tasks for workflow._poll_tasks, see src/api.c)?
 */
static bool
is_public_entry_point(Oid funcid, Oid impl_oid)
{
	char	   *name = get_func_name(funcid);
	char	   *impl_name = get_func_name(impl_oid);

	return name != NULL && impl_name != NULL && impl_name[0] == '_' &&
		strcmp(name, impl_name + 1) == 0 &&
		get_func_namespace(funcid) == get_func_namespace(impl_oid);
}

/*
 * Is the running statement exactly `SELECT <plain columns> FROM
 * workflow.poll_tasks(...)' (whose implementation `fn_oid' is) in a
 * single-statement READ COMMITTED transaction?
 * Then nothing reads with its snapshot after this function returns, and
 * the advertised xmin may be cleared while it sleeps (see the file header).
 */
static bool
statement_reads_only_this_function(Oid fn_oid)
{
	PlannedStmt *stmt;
	Plan	   *top;
	RangeTblEntry *rte;
	RangeTblFunction *rtfunc;
	ListCell   *lc;

	if (IsTransactionBlock() || XactIsoLevel != XACT_READ_COMMITTED)
		return false;
	if (ActivePortal == NULL || list_length(ActivePortal->stmts) != 1)
		return false;
	stmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (stmt->commandType != CMD_SELECT || stmt->subplans != NIL ||
		list_length(stmt->rtable) != 1)
		return false;
	top = stmt->planTree;
	if (top == NULL || !IsA(top, FunctionScan) || top->qual != NIL ||
		top->initPlan != NIL || top->lefttree != NULL)
		return false;
	foreach(lc, top->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!IsA(tle->expr, Var))
			return false;
	}
	rte = linitial_node(RangeTblEntry, stmt->rtable);
	if (rte->rtekind != RTE_FUNCTION)
		return false;
	/* the flat range table drops the function list: the plan node has it */
	if (list_length(((FunctionScan *) top)->functions) != 1)
		return false;
	rtfunc = linitial_node(RangeTblFunction, ((FunctionScan *) top)->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr) ||
		!is_public_entry_point(((FuncExpr *) rtfunc->funcexpr)->funcid, fn_oid))
		return false;
	return true;
}
