/*-------------------------------------------------------------------------
 *
 * workflow.h
 *		Declarations shared by the C files of the workflow extension:
 *		configuration variables, the shared-memory area and the wake-up
 *		interface used by runners and long-polling workers.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef WORKFLOW_H
#define WORKFLOW_H

#include "postgres.h"

#include "executor/spi.h"
#include "port/atomics.h"
#include "storage/itemptr.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/* stale_job_action values */
typedef enum WorkflowStaleAction
{
	WF_STALE_CANCEL,
	WF_STALE_RETRY
} WorkflowStaleAction;

/* configuration (src/workflow.c) */
extern char *workflow_database;
extern int	workflow_runners;
extern int	workflow_run_interval;
extern int	workflow_activity_interval;
extern int	workflow_stale_after;
extern int	workflow_stale_job_action;
extern int	workflow_retention;
extern int	workflow_failed_retention;
extern int	workflow_runner_retention;
extern bool workflow_enabled;
extern int	workflow_max_payload_size;
extern int	workflow_max_user_priority;
extern int	workflow_task_lease;
extern int	workflow_batch_size;

/*
 * One entry per PGPROC: a backend (runner or long-polling worker) that is
 * waiting for work announces here which queue of which database it waits
 * on, so that a committing transaction can set exactly the latches that
 * matter.
 */
typedef struct WorkflowWaiter
{
	pg_atomic_uint32 waiting;	/* 1 while the backend sleeps for work */
	uint32		queue;			/* hash of the queue waited on; 0 = runners */
	Oid			dboid;			/* the database of that queue */
	PGPROC	   *proc;			/* whose latch to set */
} WorkflowWaiter;

/* most runner workers (the upper bound of workflow.runners) */
#define WF_MAX_RUNNERS 64

/*
 * Most databases served at once (src/databases.c): a database where the
 * extension is installed beyond this many is not served, and create_job
 * there warns.
 */
#define WF_MAX_DATABASES 64

/*
 * Worker slots: runner N (runner-N, 1..WF_MAX_RUNNERS) has slot N; the
 * sweeper of database entry K has slot WF_SWEEPER_SLOT(K).  Slot 0 is never
 * used.
 */
#define WF_FIRST_RUNNER_SLOT 1
#define WF_SWEEPER_SLOT(db) (WF_MAX_RUNNERS + 1 + (db))
#define WF_NUM_SLOTS (WF_MAX_RUNNERS + 1 + WF_MAX_DATABASES)
#define WF_IS_SWEEPER_SLOT(i) ((i) >= WF_SWEEPER_SLOT(0) && (i) < WF_NUM_SLOTS)

/*
 * One slot per in-server worker.  pid, started_at, dboid, proc, idle and
 * idle_since are written under `mutex' (by the worker when it starts and
 * when it becomes idle or busy, pid cleared when it exits); dboid is the
 * database the worker is connected to, for life.  job_id is the job whose
 * task the worker executes right now (0 = none), readable without a lock;
 * interrupt_job is set by a committing cancel_job() (or the sweeper) before
 * it signals the worker, so the worker can tell a cancel from a timeout or
 * an administrator's pg_cancel_backend().  `leave' is set by the launcher
 * to ask a runner to hand its slot over to another database: the runner
 * hands back the jobs it has not started and exits.
 */
typedef struct WorkflowWorkerSlot
{
	pid_t		pid;			/* 0 when free */
	TimestampTz started_at;
	Oid			dboid;			/* the database it serves */
	PGPROC	   *proc;			/* its latch */
	bool		idle;
	TimestampTz idle_since;		/* when it last became idle */
	pg_atomic_uint32 leave;		/* the launcher wants the slot back */
	pg_atomic_uint64 job_id;
	pg_atomic_uint64 interrupt_job;
	pg_atomic_uint64 batch_claimed_at;	/* a runner's batch in progress: when
										 * its oldest job was claimed (0: no
										 * batch); what an idle runner may
										 * take over */
	bool		start_failed;	/* the launcher could not start this slot's
								 * worker (no background worker slot free);
								 * under `mutex', written by the launcher
								 * only */
} WorkflowWorkerSlot;

/*
 * One entry per database the workers serve or are about to serve
 * (src/databases.c; InvalidOid: a free entry).  `lock' protects dboid,
 * served, absent, absent_pokes, paused, released, paused_by and
 * paused_pid; the counters are atomics.
 *
 *	served		its sweeper found the extension: runners may go there
 *	absent		its sweeper found no extension when `pokes' was
 *				absent_pokes, and exits: the launcher forgets the entry
 *				unless a poke came since
 *	paused		a DROP DATABASE (or a command like it) of the backend
 *				paused_by (paused_pid) needs the database without our
 *				workers; the launcher stops them, starts none, and sets
 *				`released'
 *	pokes		commits that made runners' work runnable here and found
 *				no idle runner of the database to wake
 *	poke_pending  1 from such a commit until the launcher looked
 *	queued		runnable jobs of the runners' queue at the sweeper's
 *				last pass (at most WF_QUEUED_CAP)
 */
typedef struct WorkflowDatabase
{
	Oid			dboid;
	bool		served;
	bool		absent;
	uint32		absent_pokes;
	bool		paused;
	bool		released;
	PGPROC	   *paused_by;
	pid_t		paused_pid;		/* paused_by's pid (it may have exited) */
	pg_atomic_uint32 pokes;
	pg_atomic_uint32 poke_pending;
	pg_atomic_uint32 queued;
} WorkflowDatabase;

#define WF_QUEUED_CAP 10000

/*
 * What a runner executes, as noted in the crash record file
 * (src/crashrecord.c); all zero when nothing.  The task is named by its
 * place (phase, step, attempts): a claim committed without waiting for its
 * WAL flush may be lost in the crash, and the job then found queued again
 * at that very task.
 */
typedef struct WorkflowCrashRecord
{
	uint32		magic;			/* WF_CRASH_RECORD_MAGIC, or 0 when nothing */
	Oid			dboid;
	int64		job_id;
	int64		lease;
	TimestampTz started_at;		/* when the task's body started */
	int32		phase;			/* WF_PHASE_* */
	int32		step;
	int32		attempt;		/* the job's attempt */
	int32		task_attempt;
} WorkflowCrashRecord;

/* marks a record of this layout in the file */
#define WF_CRASH_RECORD_MAGIC 0x57464352

/* the shared-memory area of the extension */
typedef struct WorkflowShared
{
	slock_t		mutex;			/* protects the slots' pid, started_at,
								 * dboid, proc, idle, idle_since and the
								 * launcher */
	PGPROC	   *launcher;		/* to poke the launcher, or NULL */
	LWLock	   *lock;			/* protects the databases (see above) */
	WorkflowWorkerSlot slots[WF_NUM_SLOTS];
	WorkflowDatabase databases[WF_MAX_DATABASES];
	/*
	 * What each slot's runner executed when the server last crashed, until
	 * the sweeper of its database has settled it (cleared under mutex);
	 * unsettled counts the records not yet cleared.
	 */
	WorkflowCrashRecord interrupted[WF_NUM_SLOTS];
	pg_atomic_uint32 unsettled;
	int			nwaiters;		/* entries in waiters[] */
	WorkflowWaiter waiters[FLEXIBLE_ARRAY_MEMBER];
} WorkflowShared;

extern WorkflowShared *WorkflowShmem;

/* src/workflow.c */
extern void workflow_require_shmem(void);

/* src/crashrecord.c */
extern uint32 workflow_crash_records_load(WorkflowCrashRecord *records);
extern void workflow_crash_record_note(int slot, const WorkflowCrashRecord *what);

/* src/definitions.c */
extern void workflow_check_payload_size(Datum value, const char *what);

/* src/launcher.c */
extern void workflow_register_launcher(void);
extern PGDLLEXPORT void workflow_launcher_main(Datum main_arg);
extern void workflow_poke_launcher(void);

/* src/databases.c: which databases the workers serve */
typedef enum WorkflowUnserved
{
	WF_SERVED,					/* served (or about to be) */
	WF_UNSERVED_UNLISTED,		/* not in workflow.database */
	WF_UNSERVED_TEMPLATE,		/* a template database */
	WF_UNSERVED_NO_CONNECTIONS, /* datallowconn = false */
	WF_UNSERVED_FULL			/* WF_MAX_DATABASES others are served */
} WorkflowUnserved;

extern bool workflow_check_database_list(char **newval, void **extra, GucSource source);
extern bool workflow_database_listed(const char *name);
extern void workflow_database_note_listed(void);
extern void workflow_database_touch(bool want_runner);
extern int	workflow_database_add(Oid dboid, bool *full);
extern WorkflowDatabase *workflow_database_entry(int index, Oid dboid);
extern void workflow_install_utility_hook(void);

/* src/runner.c */
extern PGDLLEXPORT void workflow_runner_main(Datum main_arg);
extern void workflow_runner_id(int slot, char *buf, size_t len);

/* src/guard.c: the lease guard of a claimed job */
typedef enum WorkflowGuardLock
{
	WF_GUARD_READ,				/* only whether the job is ours */
	WF_GUARD_LOCK_IF_HELD		/* and lock its row if another transaction holds it */
} WorkflowGuardLock;

extern bool workflow_job_is_ours(int64 job_id, int64 lease, ItemPointer hint,
								 WorkflowGuardLock lock, bool *locked, ItemPointer found);
extern void workflow_job_lock(int64 job_id, int64 lease, ItemPointer tid);

/* src/sweeper.c */
extern PGDLLEXPORT void workflow_sweeper_main(Datum main_arg);

/* src/worker.c: what runners and the sweeper share */
extern WorkflowWorkerSlot *workflow_worker_attach(int slot, Oid dboid);
extern void workflow_worker_set_idle(WorkflowWorkerSlot *slot, bool idle);
extern void workflow_worker_connect(Oid dboid);
extern Oid	workflow_extension_ready(void);
extern void workflow_begin_spi(void);
extern void workflow_end_spi(bool commit);
extern void workflow_worker_reload_if_needed(void);

/* src/plans.c */
extern SPIPlanPtr workflow_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs,
									 Oid *argtypes);

/* a kept plan of a SQL function's body, and the pg_proc state it is of */
typedef struct WorkflowFunctionPlan
{
	SPIPlanPtr	plan;
	uint64		generation;
} WorkflowFunctionPlan;

extern SPIPlanPtr workflow_keep_function_plan(WorkflowFunctionPlan *slot, const char *signature);

/* the one author of "a task succeeded" (src/sql/30_state_machine.sql) */
#define WF_TASKS_SUCCEEDED \
	"workflow._tasks_succeeded(bigint[], bigint[], jsonb[], timestamptz[], timestamptz[], boolean, boolean)"

/* src/task.c */
typedef enum WorkflowTaskRequest
{
	WF_TASK_DONE,				/* no request: the task finished */
	WF_TASK_REQUEUE,			/* workflow.requeue(after) */
	WF_TASK_WAIT				/* workflow.wait() */
} WorkflowTaskRequest;

typedef struct WorkflowTaskResult
{
	bool		ok;				/* body ran to completion */
	WorkflowTaskRequest request;
	int64		requeue_ms;		/* delay asked by workflow.requeue() */
	Datum		output;			/* jsonb, or 0 for SQL NULL */
	Datum		error;			/* jsonb describing the error when !ok */
	int			sqlerrcode;		/* when !ok */
	Datum		info;			/* jsonb[] added by workflow.add_info(), or 0 */
} WorkflowTaskResult;

/*
 * src/names.c: the words C and SQL exchange, each a C enum in the order of
 * the SQL enum's labels and one name table (WorkflowOutcomeNames[outcome] is
 * the label of workflow.outcome that the runner passes to
 * workflow._runner_record).  C compares these enums; it never compares or
 * spells their names anywhere else.
 */

/* the outcome of a task a runner ran: workflow.outcome (src/README.md) */
typedef enum WorkflowOutcome
{
	WF_OUTCOME_SUCCEEDED,		/* the body succeeded: next task, or the end */
	WF_OUTCOME_FAILED,			/* the body failed: retry, fallback, onerror... */
	WF_OUTCOME_FATAL,			/* failed, no retry (the creator cannot log in) */
	WF_OUTCOME_REQUEUE,			/* workflow.requeue(): same task after a delay */
	WF_OUTCOME_WAIT,			/* workflow.wait(): waiting until resume_job */
	WF_OUTCOME_WAIT_STEP,		/* a wait task reached: waiting (signal, timer) */
	WF_OUTCOME_TIMEOUT,			/* the whole job's timeout passed */
	WF_OUTCOME_RELEASE,			/* handed back, a 'requeued' run recorded */
	WF_OUTCOME_RETURN			/* handed back untouched, no run recorded */
} WorkflowOutcome;

#define WF_NUM_OUTCOMES (WF_OUTCOME_RETURN + 1)
extern const char *const WorkflowOutcomeNames[];

/* which chain of its workflow a job is in: workflow.phase */
typedef enum WorkflowPhase
{
	WF_PHASE_CHAIN,
	WF_PHASE_ONERROR,
	WF_PHASE_ONCANCEL
} WorkflowPhase;

#define WF_NUM_PHASES (WF_PHASE_ONCANCEL + 1)
extern const char *const WorkflowPhaseNames[];
extern WorkflowPhase workflow_phase_from_name(const char *name);

/*
 * What a task is: workflow.tasks.kind (NONE: no such task).  The runners
 * execute every kind but EXTERNAL.  WAIT and the control-flow kinds after
 * it end in waiting (outcome wait_step), after their SQL, if they have
 * one, gave its value: a signal's key, a switch's value, a foreach list,
 * a sub-workflow's params.
 */
typedef enum WorkflowTaskKind
{
	WF_KIND_NONE,
	WF_KIND_SQL,
	WF_KIND_EXTERNAL,
	WF_KIND_WAIT,
	WF_KIND_PARALLEL,
	WF_KIND_SWITCH,
	WF_KIND_WORKFLOW,
	WF_KIND_FOREACH
} WorkflowTaskKind;

#define WF_NUM_TASK_KINDS (WF_KIND_FOREACH + 1)
/* kinds a runner executes, and kinds that end in waiting */
#define WF_KIND_IN_SERVER(kind) ((kind) != WF_KIND_NONE && (kind) != WF_KIND_EXTERNAL)
#define WF_KIND_WAITS(kind) ((kind) >= WF_KIND_WAIT)
extern const char *const WorkflowTaskKindNames[];
extern WorkflowTaskKind workflow_task_kind_from_name(const char *name);

/* src/task_cache.c */

/* how the SQL of a task is executed */
typedef enum WorkflowPlanMode
{
	WF_PLAN_UNKNOWN,			/* not decided yet: decided at its first run */
	WF_PLAN_CACHED,				/* one plannable statement: a kept plan */
	WF_PLAN_ONESHOT				/* several statements, or utility ones */
} WorkflowPlanMode;

typedef struct WorkflowTaskKey
{
	int64		workflow_id;
	int32		phase;			/* WF_PHASE_* */
	int32		position;
	Oid			owner;			/* the role that created the jobs */
	bool		fallback;		/* the fallback's code rather than the task's */
} WorkflowTaskKey;

typedef struct WorkflowTaskDef
{
	WorkflowTaskKey key;		/* hash key: must be first */
	WorkflowTaskKind kind;		/* sql, external or wait */
	char	   *body;			/* the code to run, or NULL */
	char	   *name;			/* task name */
	char	   *workflow;		/* workflow name */
	char	   *search_path;	/* the workflow's */
	int64		timeout_us;		/* task timeout, -1 = none */
	WorkflowTaskKind next_kind; /* of the next task in the phase, or NONE */
	bool		uses_context;	/* the code mentions $1 */
	WorkflowPlanMode plan_mode;
	SPIPlanPtr	plan;			/* with WF_PLAN_CACHED, once prepared */
} WorkflowTaskDef;

extern WorkflowTaskDef *workflow_task_lookup(int64 workflow_id, int phase, int position,
										  bool fallback, Oid owner);
extern void workflow_task_cache_reset(void);

extern void workflow_execute_task(int64 job_id, WorkflowTaskDef *step, Datum context,
								  Oid owner, int timeout_ms,
								  WorkflowTaskResult *result);
extern void workflow_task_finish(bool commit);

/* src/wakeup.c */
extern void workflow_interrupt_job_at_commit(int64 job_id);
extern Size workflow_wakeup_shmem_size(void);
extern void workflow_wakeup_shmem_init(WorkflowShared *shared);
extern uint32 workflow_queue_hash(const char *queue);
extern void workflow_wake_queue_at_commit(uint32 queue, int count);
extern void workflow_wait_begin(uint32 queue);
extern void workflow_wait_end(void);

/*
 * What keeps one job's fault to that job (src/runner.c, src/task.c): the
 * subtransaction of a job, the window in which a cancel is meant for a
 * task's body, how long a canceled body may take to stop, and the bound of
 * every interval a user gives the extension (100 years, months counted as
 * 30 days).
 */
extern int	workflow_cancel_grace_period;
extern volatile sig_atomic_t workflow_task_running;
extern void workflow_task_begin(void);

#define WF_MAX_INTERVAL_USECS	(INT64CONST(1200) * 30 * USECS_PER_DAY)

/*
 * src/poll.c: an interval a user gives, in milliseconds (months of 30
 * days, fractions rounded away from zero, never overflowing); the caller
 * checks its bounds.
 */
extern int64 workflow_interval_ms(const Interval *iv);

#endif							/* WORKFLOW_H */
