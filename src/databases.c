/*-------------------------------------------------------------------------
 *
 * databases.c
 *		Which databases the workers of this server serve: the setting
 *		workflow.database, the shared table of served databases, how a
 *		database gets into it, the warning of create_job in a database no
 *		worker serves, and getting the workers out of the way of DROP
 *		DATABASE and the other commands that need a database to themselves.
 *
 * workflow.database is '*' (every database where the extension is
 * installed, the default), a comma-separated list of names, or '' (none).
 * Template databases and databases that do not accept connections are
 * never served.  It is reloadable: the launcher compares the served
 * databases with it at every reload.
 *
 * The table.  WorkflowShmem->databases holds up to WF_MAX_DATABASES
 * entries, one per database served or about to be (see WorkflowDatabase in
 * workflow.h).  A database gets an entry in three ways, all of them cheap
 * for the databases that do not use the extension:
 *
 *	- a transaction that made work runnable commits in it (create_job, and
 *	  the install script, which asks for a wake-up of the runners): the
 *	  commit callback of src/wakeup.c adds the entry (workflow_database_touch);
 *	- poll_tasks, for databases whose jobs are all external tasks;
 *	- after a server start, the launcher probes every connectable database
 *	  of the list once, two at a time: it adds an entry and starts the
 *	  database's sweeper, which keeps it if the extension is there and
 *	  gives it up (exits) if not.
 *
 * A database beyond WF_MAX_DATABASES gets no entry: it is not served, the
 * launcher logs it once, and create_job there warns.  A backend only adds
 * an entry for a database of the list (workflow_database_note_listed, in
 * the transaction, before its commit callback runs), so the table is never
 * filled by databases the launcher would refuse.
 *
 * Pokes.  A commit that made jobs of the runners' queue runnable and found
 * no idle runner of its database to wake counts a poke in the entry and
 * sets the launcher's latch (once until the launcher looked): the launcher
 * then starts a runner for the database, or asks a runner of another
 * database to leave (src/launcher.c).
 *
 * Exclusive commands.  DROP DATABASE, ALTER DATABASE ... RENAME and SET
 * TABLESPACE, and CREATE DATABASE ... TEMPLATE refuse a database that other
 * sessions are connected to, our workers included.  A ProcessUtility hook
 * pauses the database first: it marks the entry paused, the launcher stops
 * every worker of it (a runner hands its jobs back) and starts none, and
 * says so (`released'); the command runs; then the entry is forgotten
 * (DROP, once its transaction commits) or the pause ends.  The wait is
 * bounded: after workflow.cancel_grace_period and 5 s more the command
 * runs anyway (and may fail as it would have).  Only the database's owner
 * (or a superuser) pauses it, so no other role can stop the workers by
 * issuing a command it may not run.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include <signal.h>

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_warn_unserved);

/* this backend's database: whether it is served (the last look) */
static WorkflowUnserved my_db_state = WF_UNSERVED_UNLISTED;

/* this backend's entry in the table, when it found one (a hint: checked) */
static int	my_entry = -1;

/* the transaction that looked last (create_job looks once per transaction) */
static LocalTransactionId checked_lxid = InvalidLocalTransactionId;

static bool unpause_callback_registered = false;

/* a DROP DATABASE of this transaction: its entry, forgotten at commit */
static bool drop_callback_registered = false;
static int	dropped_index = -1;
static Oid	dropped_dboid = InvalidOid;

static ProcessUtility_hook_type prev_utility_hook = NULL;

static WorkflowUnserved database_state(void);
static int	find_entry(Oid dboid);
static int	find_or_add_entry(Oid dboid, bool *added);
static bool parse_database_list(const char *value, char **raw, List **names,
								bool *all, char **detail);
static void workflow_utility_hook(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree, ProcessUtilityContext context,
								  ParamListInfo params, QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);
static void run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						ProcessUtilityContext context, ParamListInfo params,
						QueryEnvironment *queryEnv, DestReceiver *dest,
						QueryCompletion *qc);
static void run_paused(int index, Oid dboid, bool dropping, const char *dbname,
					   PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest,
					   QueryCompletion *qc);
static Oid	database_to_pause(Node *parsetree, bool is_top_level, bool *dropping,
							  char **dbname);
static int	pause_database(Oid dboid, const char *dbname);
static void wait_for_release(int index, Oid dboid, const char *dbname);
static void resume_database(int index, Oid dboid, bool forget);
static void unpause_at_exit(int code, Datum arg);
static void forget_at_commit(int index, Oid dboid);
static void drop_xact_callback(XactEvent event, void *arg);

/*
 * Split a value of workflow.database into its names, which point into
 * *raw (both palloc'd in the current memory context, for the caller to
 * free).  *all is true for '*'.  On a syntax error, returns false and a
 * detail message.
 */
static bool
parse_database_list(const char *value, char **raw, List **names, bool *all,
					char **detail)
{
	ListCell   *lc;

	*raw = pstrdup(value == NULL ? "" : value);
	*names = NIL;
	*all = false;
	if (!SplitGUCList(*raw, ',', names))
	{
		*detail = "The value is not a valid list of database names.";
		return false;
	}
	foreach(lc, *names)
	{
		const char *name = (const char *) lfirst(lc);

		if (name[0] == '\0')
		{
			*detail = "A database name is empty.";
			return false;
		}
		if (strlen(name) >= NAMEDATALEN)
		{
			*detail = "A database name is too long.";
			return false;
		}
		if (strcmp(name, "*") == 0)
		{
			if (list_length(*names) != 1)
			{
				*detail = "\"*\" (every database) must be the only entry.";
				return false;
			}
			*all = true;
		}
	}
	return true;
}

/*
 * GUC check hook of workflow.database: '*', '' or a list of names.
 */
bool
workflow_check_database_list(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	bool		all;
	char	   *detail = NULL;
	bool		ok;

	ok = parse_database_list(*newval, &raw, &names, &all, &detail);
	if (!ok)
		GUC_check_errdetail("%s", detail);
	list_free(names);
	pfree(raw);
	return ok;
}

/*
 * Whether workflow.database names the database `name' (or is '*').
 */
bool
workflow_database_listed(const char *name)
{
	char	   *raw;
	List	   *names;
	bool		all;
	char	   *detail;
	ListCell   *lc;
	bool		found = false;

	if (!parse_database_list(workflow_database, &raw, &names, &all, &detail))
	{
		list_free(names);
		pfree(raw);
		return false;
	}
	if (all)
		found = true;
	else
	{
		foreach(lc, names)
		{
			if (strcmp((const char *) lfirst(lc), name) == 0)
			{
				found = true;
				break;
			}
		}
	}
	list_free(names);
	pfree(raw);
	return found;
}

/*
 * Whether this backend's database is one the workers serve, by its name,
 * template flag and connection flag (not by the room left in the table).
 * Needs a transaction (catalog lookups).
 */
static WorkflowUnserved
database_state(void)
{
	HeapTuple	tup;
	Form_pg_database db;
	WorkflowUnserved state;

	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (!HeapTupleIsValid(tup))
		return WF_UNSERVED_UNLISTED;
	db = (Form_pg_database) GETSTRUCT(tup);
	if (db->datistemplate)
		state = WF_UNSERVED_TEMPLATE;
	else if (!db->datallowconn)
		state = WF_UNSERVED_NO_CONNECTIONS;
	else if (!workflow_database_listed(NameStr(db->datname)))
		state = WF_UNSERVED_UNLISTED;
	else
		state = WF_SERVED;
	ReleaseSysCache(tup);
	return state;
}

/*
 * Look at whether this backend's database is served, for
 * workflow_database_touch, which may not read the catalogs (it runs in the
 * commit callback).  Called in a transaction: at the first wake-up the
 * transaction asks for, and by poll_tasks.
 */
void
workflow_database_note_listed(void)
{
	my_db_state = database_state();
}

/*
 * The index of the entry of `dboid', or -1.  The caller holds the lock.
 */
static int
find_entry(Oid dboid)
{
	int			i;

	for (i = 0; i < WF_MAX_DATABASES; i++)
		if (WorkflowShmem->databases[i].dboid == dboid)
			return i;
	return -1;
}

/*
 * The index of the entry of `dboid', added if there is none and there is
 * room (*added is then true); -1 when the table is full.  Raises no error
 * and allocates nothing: runs in commit callbacks.
 */
static int
find_or_add_entry(Oid dboid, bool *added)
{
	int			index;

	*added = false;
	/* this backend's entry, as found last time: no lock needed to see it */
	if (my_entry >= 0 && WorkflowShmem->databases[my_entry].dboid == dboid)
		return my_entry;

	LWLockAcquire(WorkflowShmem->lock, LW_SHARED);
	index = find_entry(dboid);
	LWLockRelease(WorkflowShmem->lock);
	if (index < 0)
	{
		LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
		index = find_entry(dboid);
		if (index < 0)
		{
			index = find_entry(InvalidOid);
			if (index >= 0)
			{
				WorkflowDatabase *e = &WorkflowShmem->databases[index];

				e->dboid = dboid;
				e->served = false;
				e->absent = false;
				e->absent_pokes = 0;
				e->paused = false;
				e->released = false;
				e->paused_by = NULL;
				e->paused_pid = 0;
				pg_atomic_write_u32(&e->poke_pending, 0);
				pg_atomic_write_u32(&e->queued, 0);
				*added = true;
			}
		}
		LWLockRelease(WorkflowShmem->lock);
	}
	if (index >= 0 && dboid == MyDatabaseId)
		my_entry = index;
	return index;
}

/*
 * Add an entry for `dboid' (the launcher's probe).  Returns its index, or
 * -1 when the database has one already or the table is full (*full).
 */
int
workflow_database_add(Oid dboid, bool *full)
{
	bool		added;
	int			index = find_or_add_entry(dboid, &added);

	*full = index < 0;
	return added ? index : -1;
}

/*
 * This backend's database has work (runnable jobs, or an external worker
 * polling it): make sure it is in the table, and with `want_runner' (jobs
 * of the runners' queue that no idle runner of the database was woken for)
 * count a poke.  The launcher's latch is set when the entry is new, or for
 * the first poke since the launcher last looked.  Runs in the commit
 * callback of src/wakeup.c: uses what workflow_database_note_listed()
 * found, raises no error.
 */
void
workflow_database_touch(bool want_runner)
{
	int			index;
	bool		added;
	bool		poke = false;

	if (WorkflowShmem == NULL || my_db_state != WF_SERVED || !OidIsValid(MyDatabaseId))
		return;
	index = find_or_add_entry(MyDatabaseId, &added);
	if (index < 0)
		return;
	if (want_runner)
	{
		WorkflowDatabase *e = &WorkflowShmem->databases[index];

		pg_atomic_fetch_add_u32(&e->pokes, 1);
		if (pg_atomic_exchange_u32(&e->poke_pending, 1) == 0)
			poke = true;
	}
	if (added || poke)
		workflow_poke_launcher();
}

/*
 * The entry of index `index' if it is that of `dboid' (a sweeper's own),
 * else NULL.
 */
WorkflowDatabase *
workflow_database_entry(int index, Oid dboid)
{
	WorkflowDatabase *e;

	if (index < 0 || index >= WF_MAX_DATABASES)
		return NULL;
	e = &WorkflowShmem->databases[index];
	return e->dboid == dboid ? e : NULL;
}

/*
 * workflow._warn_unserved() returns void: called by create_job.  Warns
 * (once per transaction) when no worker of this server will run the jobs
 * of this database; silent otherwise, and when the library is not
 * preloaded (create_job then fails with its own error).
 * workflow.enabled = off (a pause of every database) and workflow.runners
 * = 0 (the jobs are meant for the runner protocol) do not make a database
 * unserved: its sweeper still runs.
 */
Datum
workflow_warn_unserved(PG_FUNCTION_ARGS)
{
	WorkflowUnserved state;
	char	   *name;

	if (WorkflowShmem == NULL || MyProc == NULL)
		PG_RETURN_VOID();
	if (WF_MY_LXID == checked_lxid)
		PG_RETURN_VOID();
	checked_lxid = WF_MY_LXID;

	state = database_state();
	if (state == WF_SERVED)
	{
		int			index;

		LWLockAcquire(WorkflowShmem->lock, LW_SHARED);
		index = find_entry(MyDatabaseId);
		if (index < 0 && find_entry(InvalidOid) < 0)
			state = WF_UNSERVED_FULL;
		LWLockRelease(WorkflowShmem->lock);
	}
	if (state == WF_SERVED)
		PG_RETURN_VOID();

	name = get_database_name(MyDatabaseId);
	switch (state)
	{
		case WF_UNSERVED_UNLISTED:
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("no workflow worker serves database \"%s\"", name),
					 errdetail("workflow.database is \"%s\": the jobs of this database stay queued.",
							   workflow_database),
					 errhint("Add the database to workflow.database (or set it to '*') in postgresql.conf and reload the configuration.")));
			break;
		case WF_UNSERVED_TEMPLATE:
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("no workflow worker serves database \"%s\"", name),
					 errdetail("It is a template database: the jobs of this database stay queued."),
					 errhint("Create jobs in a database that is not a template (workflow.database never serves templates).")));
			break;
		case WF_UNSERVED_NO_CONNECTIONS:
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("no workflow worker serves database \"%s\"", name),
					 errdetail("The database does not allow connections: the jobs of this database stay queued."),
					 errhint("Allow connections with ALTER DATABASE ... ALLOW_CONNECTIONS true.")));
			break;
		case WF_UNSERVED_FULL:
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("no workflow worker serves database \"%s\"", name),
					 errdetail("The workers serve at most %d databases, and that many are served: the jobs of this database stay queued.",
							   WF_MAX_DATABASES),
					 errhint("Drop the extension from the databases that do not use it, or list the databases to serve in workflow.database.")));
			break;
		case WF_SERVED:
			break;
	}
	PG_RETURN_VOID();
}

/*
 * Install the ProcessUtility hook (from shared_preload_libraries).
 */
void
workflow_install_utility_hook(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = workflow_utility_hook;
}

/*
 * ProcessUtility hook: run the commands that need a database without other
 * sessions (DROP DATABASE, ...) with that database paused (file header).
 */
static void
workflow_utility_hook(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = InvalidOid;
	bool		dropping = false;
	char	   *dbname = NULL;
	int			index = -1;

	if (WorkflowShmem != NULL)
		dboid = database_to_pause(pstmt->utilityStmt,
								  context == PROCESS_UTILITY_TOPLEVEL,
								  &dropping, &dbname);
	if (OidIsValid(dboid))
		index = pause_database(dboid, dbname);

	if (index < 0)
		run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
					dest, qc);
	else
		run_paused(index, dboid, dropping, dbname, pstmt, queryString,
				   readOnlyTree, context, params, queryEnv, dest, qc);
}

/*
 * Run a utility statement: the next hook, or PostgreSQL's own.
 */
static void
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
						  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Run a utility statement once the workers have left the paused database
 * of entry `index', and end the pause however it ends: forget the entry
 * when the statement dropped the database.
 */
static pg_noinline void
run_paused(int index, Oid dboid, bool dropping, const char *dbname,
		   PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
		   ProcessUtilityContext context, ParamListInfo params,
		   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	PG_TRY();
	{
		wait_for_release(index, dboid, dbname);
		run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
					dest, qc);
	}
	PG_CATCH();
	{
		resume_database(index, dboid, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (dropping)
		forget_at_commit(index, dboid);
	else
		resume_database(index, dboid, false);
}

/*
 * DROP DATABASE went through, but its transaction has not committed yet:
 * keep the entry paused until it ends, then forget it (commit) or end the
 * pause (abort), so that no probe starts a worker for a database whose
 * files are gone.
 */
static void
forget_at_commit(int index, Oid dboid)
{
	if (!drop_callback_registered)
	{
		RegisterXactCallback(drop_xact_callback, NULL);
		drop_callback_registered = true;
	}
	dropped_index = index;
	dropped_dboid = dboid;
}

/*
 * End of the transaction of a DROP DATABASE (forget_at_commit).  Only a
 * lock and a latch: it runs in commit callbacks.
 */
static void
drop_xact_callback(XactEvent event, void *arg)
{
	if (!OidIsValid(dropped_dboid))
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			resume_database(dropped_index, dropped_dboid, true);
			dropped_dboid = InvalidOid;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			resume_database(dropped_index, dropped_dboid, false);
			dropped_dboid = InvalidOid;
			break;
		default:
			break;
	}
}

/*
 * The database a utility statement needs without other sessions, when the
 * current role owns it (else the command fails on its own, and nothing is
 * paused): DROP DATABASE, ALTER DATABASE ... RENAME TO and SET TABLESPACE,
 * CREATE DATABASE ... TEMPLATE.  InvalidOid for any other statement, for
 * a database that does not exist, for the current database, and for
 * DROP or CREATE DATABASE where they cannot run (in a transaction block).
 */
static Oid
database_to_pause(Node *parsetree, bool is_top_level, bool *dropping, char **dbname)
{
	char	   *name = NULL;
	Oid			dboid;
	bool		standalone = false;	/* the command refuses transaction blocks */
	ListCell   *lc;

	*dropping = false;
	if (parsetree == NULL)
		return InvalidOid;
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) parsetree)->dbname;
			*dropping = true;
			standalone = true;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				DefElem    *opt = (DefElem *) lfirst(lc);

				if (strcmp(opt->defname, "tablespace") == 0)
				{
					name = ((AlterDatabaseStmt *) parsetree)->dbname;
					standalone = true;
				}
			}
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *opt = (DefElem *) lfirst(lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
				{
					name = defGetString(opt);
					standalone = true;
				}
			}
			break;
		default:
			break;
	}
	if (name == NULL)
		return InvalidOid;
	if (standalone && (!is_top_level || IsTransactionBlock()))
		return InvalidOid;
	dboid = get_database_oid(name, true);
	if (!OidIsValid(dboid) || dboid == MyDatabaseId)
		return InvalidOid;
	if (!WF_DATABASE_OWNERCHECK(dboid, GetUserId()))
		return InvalidOid;
	*dbname = name;
	return dboid;
}

/*
 * Mark the entry of `dboid' paused, adding one when the launcher might
 * serve the database (so that no probe starts meanwhile), and poke the
 * launcher.  Returns the entry's index, or -1 when none is needed (the
 * database is not ours) or possible (the table is full: then none of our
 * workers is connected to it either).
 */
static int
pause_database(Oid dboid, const char *dbname)
{
	int			index;
	WorkflowDatabase *e;

	LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
	index = find_entry(dboid);
	if (index < 0 && workflow_database_listed(dbname))
	{
		index = find_entry(InvalidOid);
		if (index >= 0)
		{
			e = &WorkflowShmem->databases[index];
			e->dboid = dboid;
			e->served = false;
			e->absent = false;
			e->absent_pokes = 0;
			pg_atomic_write_u32(&e->poke_pending, 0);
			pg_atomic_write_u32(&e->queued, 0);
		}
	}
	if (index >= 0)
	{
		e = &WorkflowShmem->databases[index];
		e->paused = true;
		e->released = false;
		e->paused_by = MyProc;
		e->paused_pid = MyProcPid;
	}
	LWLockRelease(WorkflowShmem->lock);

	if (index >= 0)
	{
		if (!unpause_callback_registered)
		{
			before_shmem_exit(unpause_at_exit, (Datum) 0);
			unpause_callback_registered = true;
		}
		workflow_poke_launcher();
	}
	return index;
}

/*
 * Wait until the launcher has stopped every worker of the paused database
 * (or, while there is no launcher, until they are gone: they are asked to
 * stop here).  Bounded: after workflow.cancel_grace_period and 5 s more,
 * warn and go on.  Cancelable.
 */
static void
wait_for_release(int index, Oid dboid, const char *dbname)
{
	WorkflowDatabase *e = &WorkflowShmem->databases[index];
	int			bound_ms = workflow_cancel_grace_period + 5000;
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), bound_ms);
	bool		signaled = false;

	pgstat_report_activity(STATE_RUNNING, "waiting for the workflow workers to leave the database");
	for (;;)
	{
		bool		released;
		PGPROC	   *launcher;

		LWLockAcquire(WorkflowShmem->lock, LW_SHARED);
		released = e->dboid == dboid && e->released;
		LWLockRelease(WorkflowShmem->lock);
		if (released)
			break;

		SpinLockAcquire(&WorkflowShmem->mutex);
		launcher = WorkflowShmem->launcher;
		SpinLockRelease(&WorkflowShmem->mutex);
		if (launcher == NULL)
		{
			int			alive = 0;
			int			i;

			for (i = 0; i < WF_NUM_SLOTS; i++)
			{
				WorkflowWorkerSlot *s = &WorkflowShmem->slots[i];
				pid_t		pid;

				SpinLockAcquire(&WorkflowShmem->mutex);
				pid = s->dboid == dboid ? s->pid : 0;
				SpinLockRelease(&WorkflowShmem->mutex);
				if (pid == 0)
					continue;
				alive++;
				if (!signaled)
					kill(pid, SIGTERM);
			}
			signaled = true;
			if (alive == 0)
				break;
		}

		if (GetCurrentTimestamp() >= until)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("workflow workers of database \"%s\" did not stop within %d ms",
							dbname, bound_ms),
					 errhint("A task may be ignoring its cancel; see workflow.cancel_grace_period.")));
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 20L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_report_activity(STATE_RUNNING, debug_query_string);
}

/*
 * End the pause of the entry this backend paused: forget the entry (the
 * database was dropped) or let the launcher serve the database again.
 */
static void
resume_database(int index, Oid dboid, bool forget)
{
	WorkflowDatabase *e = &WorkflowShmem->databases[index];

	LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
	if (e->dboid == dboid && e->paused && e->paused_by == MyProc)
	{
		e->paused = false;
		e->released = false;
		e->paused_by = NULL;
		e->paused_pid = 0;
		if (forget)
			e->dboid = InvalidOid;
	}
	LWLockRelease(WorkflowShmem->lock);
	workflow_poke_launcher();
}

/*
 * Exit callback of a backend that paused a database: a pause must not
 * outlive it (a FATAL during the command).
 */
static void
unpause_at_exit(int code, Datum arg)
{
	int			i;
	bool		any = false;

	if (WorkflowShmem == NULL)
		return;
	LWLockAcquire(WorkflowShmem->lock, LW_EXCLUSIVE);
	for (i = 0; i < WF_MAX_DATABASES; i++)
	{
		WorkflowDatabase *e = &WorkflowShmem->databases[i];

		if (e->paused && e->paused_by == MyProc)
		{
			e->paused = false;
			e->released = false;
			e->paused_by = NULL;
			e->paused_pid = 0;
			any = true;
		}
	}
	LWLockRelease(WorkflowShmem->lock);
	if (any)
		workflow_poke_launcher();
}
