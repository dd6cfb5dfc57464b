/*-------------------------------------------------------------------------
 *
 * concurrency_key.c
 *		Computing a new job's concurrency key: the definition's
 *		"concurrency_key" query, run as the job's creator.
 *
 * A queue with key_concurrency runs at most that many jobs per value of
 * the key (a tenant, say).  The key is computed once, when the job is
 * created, from the job's context ($1: {"job": {id, workflow, version,
 * params, target}}), and stored with the job, so that a claim compares
 * stored values and runs no user code.
 *
 * The query is the workflow owner's code, run for the job's creator, the
 * way its tasks are (src/task.c): as the creator, with
 * SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION, and with
 * the workflow's search_path pinned in a GUC nest level.  It runs as a
 * read-only SPI query, so a statement of its own that writes (a
 * data-modifying WITH) is refused; a function it calls runs as that
 * function says, with the creator's rights.  It is called from the SECURITY
 * DEFINER implementation of create_job, so none of that definer's rights
 * reach the query.  An error of the query fails the create_job call, with
 * a context line naming the workflow.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_concurrency_key);

/* the longest key: like a target or an idempotency key */
#define MAX_KEY_LENGTH 1000

/*
 * Error context callback: which workflow's concurrency_key failed.
 */
static void
key_error_context(void *arg)
{
	errcontext("concurrency_key of workflow \"%s\"", (const char *) arg);
}

/*
 * workflow._concurrency_key(query text, context jsonb, creator oid,
 * search_path text, workflow text) → text: the first column of the first
 * row of the query, as text; NULL when it returns no row or NULL.
 */
Datum
workflow_concurrency_key(PG_FUNCTION_ARGS)
{
	char	   *query;
	Datum		context;
	Oid			creator;
	char	   *search_path;
	char	   *workflow_name;
	Oid			argtypes[1] = {JSONBOID};
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	char	   *value = NULL;
	text	   *result = NULL;
	ErrorContextCallback errcallback;
	MemoryContext callercxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		elog(ERROR, "workflow._concurrency_key called with a null argument");
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	context = PG_GETARG_DATUM(1);
	creator = PG_GETARG_OID(2);
	search_path = text_to_cstring(PG_GETARG_TEXT_PP(3));
	workflow_name = text_to_cstring(PG_GETARG_TEXT_PP(4));

	errcallback.callback = key_error_context;
	errcallback.arg = workflow_name;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	/* an error restores the user and the GUCs at the transaction's abort */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(creator, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* read-only: a data-modifying statement of the query is refused */
	(void) SPI_execute_with_args(query, 1, argtypes, &context, NULL, true, 1);
	if (SPI_tuptable != NULL && SPI_processed > 0 && SPI_tuptable->tupdesc->natts > 0)
	{
		MemoryContext spicxt = MemoryContextSwitchTo(callercxt);

		value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();

	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (value != NULL && pg_mbstrlen(value) > MAX_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("concurrency key must not be longer than %d characters", MAX_KEY_LENGTH)));
	error_context_stack = errcallback.previous;

	if (value == NULL || value[0] == '\0')
		PG_RETURN_NULL();
	result = cstring_to_text(value);
	PG_RETURN_TEXT_P(result);
}
