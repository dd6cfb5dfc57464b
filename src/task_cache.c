/*-------------------------------------------------------------------------
 *
 * task_cache.c
 *		The runner's cache of task definitions, and of the prepared plans of
 *		their SQL.
 *
 * A stored workflow version is immutable (workflow.workflows and
 * workflow.tasks are only ever inserted into, and deleted by
 * drop_workflow(), whose ids are never reused), so a runner may keep what
 * it read of a task for as long as the extension it read it from exists.
 * The cache is emptied when the extension's OID changes (DROP and CREATE
 * EXTENSION start the ids again).  A task's kind, and that of the task
 * after it, are read once, here, into WorkflowTaskKind (src/names.c): the
 * runner compares enums, never the kind's text.
 *
 * An entry is per task, per code (the task's SQL or its fallback) and per
 * role that created the job: the plan of a task's SQL is prepared while
 * the runner is switched to that role (task.c), so that every privilege
 * checked while a statement is analysed (USAGE on a schema, for one) is
 * the role's own; the executor checks the rest at every execution.  The
 * plan cache re-plans by itself when an object the plan depends on
 * changes, or when the search_path differs.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "compat.h"
#include "workflow.h"

static HTAB *task_cache = NULL;
static MemoryContext task_cache_context = NULL;

/*
 * Forget every cached task and free the plans.
 */
void
workflow_task_cache_reset(void)
{
	HASH_SEQ_STATUS status;
	WorkflowTaskDef *entry;

	if (task_cache == NULL)
		return;
	hash_seq_init(&status, task_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->plan != NULL)
			SPI_freeplan(entry->plan);
		entry->plan = NULL;
	}
	hash_destroy(task_cache);
	task_cache = NULL;
	MemoryContextReset(task_cache_context);
}

/*
 * A copy of column `col' of the row in the step cache's memory, or NULL.
 */
static char *
cache_string(HeapTuple row, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(row, desc, col);

	return value == NULL ? NULL : MemoryContextStrdup(task_cache_context, value);
}

/*
 * The task at (workflow_id, phase, position) with the code of its SQL or,
 * when `fallback', of its fallback, for jobs created by `owner'.  Reads it
 * through SPI (the caller is connected) the first time.  Returns NULL when
 * the workflow has no such task.
 */
WorkflowTaskDef *
workflow_task_lookup(int64 workflow_id, int phase, int position, bool fallback, Oid owner)
{
	static SPIPlanPtr plan = NULL;
	WorkflowTaskKey key;
	WorkflowTaskDef *entry;
	bool		found;
	Datum		values[3];
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	Datum		timeout;

	if (task_cache == NULL)
	{
		HASHCTL		ctl;

		if (task_cache_context == NULL)
			task_cache_context = AllocSetContextCreate(TopMemoryContext,
													   "workflow step cache",
													   ALLOCSET_DEFAULT_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(WorkflowTaskKey);
		ctl.entrysize = sizeof(WorkflowTaskDef);
		ctl.hcxt = task_cache_context;
		task_cache = hash_create("workflow step cache", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	memset(&key, 0, sizeof(key));
	key.workflow_id = workflow_id;
	key.phase = phase;
	key.position = position;
	key.fallback = fallback;
	key.owner = owner;
	entry = hash_search(task_cache, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	if (plan == NULL)
	{
		Oid			argtypes[3] = {INT8OID, TEXTOID, INT4OID};

		workflow_keep_plan(&plan, "SELECT s.kind, s.sql, s.fallback, s.name, w.name, w.search_path, "
						   "       LEAST(extract(epoch FROM s.timeout) * 1000000, "
						   "             3110400000000000)::bigint, " /* 100 years */
						   "       n.kind "
						   "  FROM workflow.tasks s "
						   "  JOIN workflow.workflows w ON w.id = s.workflow_id "
						   "  LEFT JOIN workflow.tasks n ON n.workflow_id = s.workflow_id "
						   "       AND n.phase = s.phase AND n.position = s.position + 1 "
						   " WHERE s.workflow_id = $1 AND s.phase = $2::workflow.phase "
						   "   AND s.position = $3", 3, argtypes);
	}
	values[0] = Int64GetDatum(workflow_id);
	values[1] = CStringGetTextDatum(WorkflowPhaseNames[phase]);
	values[2] = Int32GetDatum(position);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "workflow runner could not look up a task of workflow %lld", (long long) workflow_id);
	if (SPI_processed != 1)
		return NULL;

	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	entry = hash_search(task_cache, &key, HASH_ENTER, &found);
	Assert(!found);
	memset(((char *) entry) + sizeof(WorkflowTaskKey), 0,
		   sizeof(WorkflowTaskDef) - sizeof(WorkflowTaskKey));
	/* the kinds are compared as enums from here on (names.c) */
	entry->kind = workflow_task_kind_from_name(SPI_getvalue(row, desc, 1));
	entry->body = cache_string(row, desc, fallback ? 3 : 2);
	entry->name = cache_string(row, desc, 4);
	entry->workflow = cache_string(row, desc, 5);
	entry->search_path = cache_string(row, desc, 6);
	/* at most 100 years, as every interval of a definition */
	timeout = SPI_getbinval(row, desc, 7, &isnull);
	entry->timeout_us = isnull ? -1 : Min(DatumGetInt64(timeout), WF_MAX_INTERVAL_USECS);
	entry->next_kind = workflow_task_kind_from_name(SPI_getvalue(row, desc, 8));
	/* the context is only built for code that can read it */
	entry->uses_context = entry->body != NULL && strstr(entry->body, "$1") != NULL;
	entry->plan_mode = WF_PLAN_UNKNOWN;
	entry->plan = NULL;
	return entry;
}
