/*-------------------------------------------------------------------------
 *
 * workflow.c
 *		Entry point of the workflow extension: configuration variables,
 *		shared memory, and (from shared_preload_libraries) the background
 *		workers.
 *
 * From shared_preload_libraries the library reserves its shared memory,
 * installs the hook that keeps the workers out of the way of DROP DATABASE
 * (src/databases.c) and registers the launcher (src/launcher.c), which
 * starts the sweepers and the runners.  The library is meant to be loaded
 * that way.  Loaded any other way (CREATE EXTENSION or LOAD in a server
 * that did not preload it) it still defines its configuration variables,
 * so that SHOW and postgresql.conf behave, but it has no shared memory:
 * every function that needs it raises an error with a hint instead of
 * misbehaving.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "compat.h"
#include "workflow.h"

PG_MODULE_MAGIC;

/* configuration variables, documented in README.md */
char	   *workflow_database = NULL;
int			workflow_runners = 2;
int			workflow_run_interval = 250;
int			workflow_activity_interval = 1000;
int			workflow_stale_after = 10;
int			workflow_stale_job_action = WF_STALE_CANCEL;
int			workflow_retention = 7 * 24 * 3600;
int			workflow_failed_retention = 30 * 24 * 3600;
int			workflow_runner_retention = 24 * 3600;
/* read in SQL only (workflow._signal_retention()) */
static int	workflow_signal_retention = 3600;
bool		workflow_enabled = true;
int			workflow_max_payload_size = 1024;
int			workflow_task_lease = 60;
int			workflow_batch_size = 50;
int			workflow_cancel_grace_period = 5000;
int			workflow_max_user_priority = 0;

WorkflowShared *WorkflowShmem = NULL;

static const struct config_enum_entry stale_action_options[] = {
	{"cancel", WF_STALE_CANCEL, false},
	{"retry", WF_STALE_RETRY, false},
	{NULL, 0, false}
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);
static void workflow_define_gucs(void);
static void workflow_shmem_request(void);
static void workflow_shmem_startup(void);

/*
 * Module load: define the configuration variables everywhere; reserve
 * shared memory and start the workers only from shared_preload_libraries.
 */
void
_PG_init(void)
{
	workflow_define_gucs();

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* a binary upgrade must not run anything */
	if (IsBinaryUpgrade)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = workflow_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = workflow_shmem_startup;
	workflow_install_utility_hook();

	workflow_register_launcher();
}

/*
 * The configuration variables (README "Configuration").
 * Everything a running server may change is reloadable (PGC_SIGHUP).
 */
static void
workflow_define_gucs(void)
{
	DefineCustomStringVariable("workflow.database",
							   "Databases whose jobs the background workers run.",
							   "* serves every database where the extension is installed; else a comma-separated list of database names. Templates and databases that do not allow connections are never served.",
							   &workflow_database,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   workflow_check_database_list, NULL, NULL);

	DefineCustomIntVariable("workflow.runners",
							"Number of runner background workers (node-workflow forks), shared by the served databases.",
							"Zero starts no runner; jobs then only run through the SQL runner protocol.",
							&workflow_runners,
							2, 0, 64,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.run_interval",
							"Fallback poll interval of idle runners when no wake-up arrives.",
							NULL,
							&workflow_run_interval,
							250, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.activity_interval",
							"Heartbeat period of the runners.",
							NULL,
							&workflow_activity_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.stale_after",
							"A runner silent for longer than this, whose process is gone, is inactive.",
							NULL,
							&workflow_stale_after,
							10, 1, 7 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("workflow.stale_job_action",
							 "What the sweeper does with the jobs of an inactive runner.",
							 "cancel runs the oncancel chain (node-workflow); retry queues the job again.",
							 &workflow_stale_job_action,
							 WF_STALE_CANCEL,
							 stale_action_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.retention",
							"Succeeded jobs older than this are pruned; 0 keeps all.",
							"Failed and canceled jobs follow workflow.failed_retention; a child job goes with its root.",
							&workflow_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.failed_retention",
							"Failed and canceled jobs older than this are pruned; 0 keeps all.",
							"Succeeded jobs follow workflow.retention; a child job goes with its root.",
							&workflow_failed_retention,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.runner_retention",
							"External runners not heard from for longer than this, and holding no running job, are removed; 0 keeps all.",
							"A worker whose runner id was removed gets it again, as its own, at its next register_runner, poll_tasks or run_job call.",
							&workflow_runner_retention,
							24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.signal_retention",
							"A signal that resumes no job is kept this long for the first job of its role that waits on its key; 0 keeps none.",
							NULL,
							&workflow_signal_retention,
							3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("workflow.enabled",
							 "Whether the runners execute jobs; off pauses them all.",
							 NULL,
							 &workflow_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.batch_size",
							"Most jobs a runner claims and runs in one transaction.",
							"Each job's task runs in its own subtransaction; a batch is only as large as the waiting work. Above about 60, other sessions' snapshots get slower (subtransaction cache overflow).",
							&workflow_batch_size,
							50, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.task_lease",
							"How long an external worker holds a task without a timeout before it is handed out again.",
							"Workers extend their lease with workflow.extend_task().",
							&workflow_task_lease,
							60, 1, 7 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.max_payload_size",
							"Largest definition, params, result or info document accepted.",
							NULL,
							&workflow_max_payload_size,
							1024, 1, 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	/*
	 * Read by workflow._create_job (SQL).  PGC_SUSET, so that a role cannot
	 * raise its own limit, while an administrator can give one role more
	 * with ALTER ROLE ... SET.
	 */
	DefineCustomIntVariable("workflow.max_user_priority",
							"Highest job priority a role that is not a member of workflow_admin may use.",
							"Jobs of higher priority run first, whoever created them: in a database shared by several roles, one role's high-priority jobs would delay every other role's. Set it per role with ALTER ROLE ... SET.",
							&workflow_max_user_priority,
							0, -1000000, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("workflow.cancel_grace_period",
							"How long a canceled task may take to stop before its runner is terminated.",
							"A task that catches query_canceled keeps running past its timeout, cancel_job() or a shutdown; after this grace period its runner exits (FATAL) and hands its other jobs back.",
							&workflow_cancel_grace_period,
							5000, 100, 600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("workflow");
}

/*
 * Reserve the shared memory (PG15+: only allowed from this hook).
 */
static void
workflow_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(workflow_wakeup_shmem_size());
	RequestNamedLWLockTranche("workflow", 1);
}

/*
 * Create or attach to the shared-memory area.
 */
static void
workflow_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	/* reset in case of a crash restart of the postmaster */
	WorkflowShmem = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	WorkflowShmem = ShmemInitStruct("workflow", workflow_wakeup_shmem_size(), &found);
	if (!found)
	{
		workflow_wakeup_shmem_init(WorkflowShmem);
		WorkflowShmem->lock = &(GetNamedLWLockTranche("workflow"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Raise the standard error when the library was not preloaded and a
 * function needs its shared memory.
 */
void
workflow_require_shmem(void)
{
	if (WorkflowShmem == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow must be loaded via shared_preload_libraries"),
				 errhint("Add workflow to shared_preload_libraries in postgresql.conf and restart the server.")));
}
