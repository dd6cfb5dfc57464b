/*-------------------------------------------------------------------------
 *
 * definitions.c
 *		Checks used when a workflow definition or a payload is accepted:
 *		SQL task bodies are parsed, not run, so that syntax errors show up
 *		at create_workflow() rather than when a runner reaches the task;
 *		a definition's search_path is parsed without being applied;
 *		documents larger than workflow.max_payload_size are refused; the
 *		arguments of each job create_job and create_jobs make are checked
 *		by one function, cheap enough to run once per element of a bulk
 *		call.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/varlena.h"

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_check_sql);
PG_FUNCTION_INFO_V1(workflow_check_query);
PG_FUNCTION_INFO_V1(workflow_check_search_path);
PG_FUNCTION_INFO_V1(workflow_check_payload);
PG_FUNCTION_INFO_V1(workflow_check_job_args);

/* the field being parsed, for the error context callback */
typedef struct CheckSqlContext
{
	const char *field;
	const char *body;
} CheckSqlContext;

/*
 * Error context: name the definition field whose SQL failed to parse, and
 * turn the parser's cursor position (which points into the task body, not
 * into the statement that called create_workflow) into an internal
 * position within the body, so that the error shows the body.
 */
static void
check_sql_error_callback(void *arg)
{
	CheckSqlContext *ctx = (CheckSqlContext *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(ctx->body);
	}
	errcontext("SQL of workflow definition field \"%s\"", ctx->field);
}

/*
 * Parse the SQL of definition field `field' with the raw parser; a syntax
 * error carries the field's name and a cursor into the body.
 */
static List *
parse_field_sql(char *body, char *field)
{
	CheckSqlContext ctx;
	ErrorContextCallback errcallback;
	List	   *stmts;

	ctx.field = field;
	ctx.body = body;
	errcallback.callback = check_sql_error_callback;
	errcallback.arg = &ctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	stmts = raw_parser(body, RAW_PARSE_DEFAULT);

	error_context_stack = errcallback.previous;
	return stmts;
}

/*
 * workflow._check_sql(body text, field text): parse an SQL task body with
 * the raw parser.  A syntax error is raised as the parser raises it, with a
 * context line naming the field.  Transaction control is refused: a task
 * runs inside the transaction that also records its result, so COMMIT or
 * ROLLBACK in a task would break exactly-once.
 */
Datum
workflow_check_sql(PG_FUNCTION_ARGS)
{
	char	   *body = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *field = text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *stmts;
	ListCell   *lc;

	stmts = parse_field_sql(body, field);

	if (stmts == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid workflow definition: field \"%s\" contains no SQL statement",
						field)));

	foreach(lc, stmts)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);

		if (IsA(raw->stmt, TransactionStmt))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid workflow definition: field \"%s\" contains a transaction control statement",
							field),
					 errdetail("A task runs in the transaction that records its result; it cannot commit, roll back or use savepoints itself.")));
		if (IsA(raw->stmt, CopyStmt) && ((CopyStmt *) raw->stmt)->filename == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid workflow definition: field \"%s\" contains COPY FROM STDIN or COPY TO STDOUT",
							field),
					 errdetail("A task runs in a background worker, which has no client to copy data from or to."),
					 errhint("Use INSERT ... SELECT, or COPY to or from a server file or program.")));
	}

	PG_RETURN_VOID();
}

/*
 * workflow._check_query(body text, field text): parse the SQL of a
 * control-flow expression (a switch, a foreach list, a sub-workflow's
 * params, a signal key), which must be one query returning rows: SELECT,
 * VALUES, TABLE or WITH ... SELECT, without INTO.  Returns the query's
 * text without a trailing semicolon or surrounding blanks, so that the
 * caller may use it as a subquery.  Errors as for _check_sql.
 */
Datum
workflow_check_query(PG_FUNCTION_ARGS)
{
	char	   *body = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *field = text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *stmts;
	RawStmt    *raw;
	const char *start;
	int			len;

	stmts = parse_field_sql(body, field);

	if (list_length(stmts) != 1 ||
		!IsA(linitial_node(RawStmt, stmts)->stmt, SelectStmt) ||
		((SelectStmt *) linitial_node(RawStmt, stmts)->stmt)->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid workflow definition: field \"%s\" must be a single query returning rows",
						field),
				 errhint("Use one SELECT, VALUES or WITH ... SELECT statement, without INTO.")));

	/* the statement alone: stmt_len 0 means "to the end of the string" */
	raw = linitial_node(RawStmt, stmts);
	start = body + raw->stmt_location;
	len = raw->stmt_len > 0 ? raw->stmt_len : (int) strlen(start);
	/* where a statement starts differs between versions: trim both ends */
	while (len > 0 && scanner_isspace(*start))
	{
		start++;
		len--;
	}
	while (len > 0 && scanner_isspace(start[len - 1]))
		len--;
	PG_RETURN_TEXT_P(cstring_to_text_with_len(start, len));
}

/*
 * workflow._check_search_path(value text): whether a definition's
 * "search_path" is a list of schema names: the list in canonical form
 * (each name quoted as needed, separated by ", "), or NULL when it is not
 * one.
 *
 * The value is only parsed, never applied: the caller is a SECURITY
 * DEFINER function, and a search_path set inside it would decide how every
 * later unqualified name of that function is resolved.  The parsing is the
 * one the search_path setting itself uses (SplitIdentifierString), so a
 * value accepted here is accepted when a runner sets it for the tasks.
 * Schemas need not exist yet, as for SET search_path.
 */
Datum
workflow_check_search_path(PG_FUNCTION_ARGS)
{
	char	   *value;
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	value = text_to_cstring(PG_GETARG_TEXT_PP(0));

	/* SplitIdentifierString scribbles on its input: give it a copy */
	if (!SplitIdentifierString(pstrdup(value), ',', &names) || names == NIL)
		PG_RETURN_NULL();

	initStringInfo(&buf);
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);

		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		/* "$user" stays a quoted identifier, as SHOW search_path prints it */
		appendStringInfoString(&buf, quote_identifier(name));
	}
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}

/*
 * Refuse a document larger than workflow.max_payload_size (checked on the
 * stored size, without converting it to text); `what' names it.
 */
void
workflow_check_payload_size(Datum value, const char *what)
{
	Size		size = toast_raw_datum_size(value) - VARHDRSZ;

	if (size > (Size) workflow_max_payload_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload too large: %s", what),
				 errdetail("Its size is %zu bytes; the limit is %d kB.",
						   size, workflow_max_payload_size),
				 errhint("Store large data in a table and pass its key, or raise workflow.max_payload_size.")));
}

/*
 * workflow._check_payload(value jsonb, what text): refuse a NULL document
 * and one larger than workflow.max_payload_size.
 */
Datum
workflow_check_payload(PG_FUNCTION_ARGS)
{
	char	   *what;

	what = PG_ARGISNULL(1) ? "value" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	workflow_check_payload_size(PG_GETARG_DATUM(0), what);

	PG_RETURN_VOID();
}

/*
 * workflow._check_job_args(params jsonb, target text, idempotency_key text,
 * element integer) returns boolean: the checks of one job's own arguments,
 * the same for create_job and for every element of create_jobs.  params
 * must be a JSON object no larger than workflow.max_payload_size; target
 * and key, when given, 1 to 1000 characters.  `element' (1-based) names
 * the element of create_jobs' arrays in the error; NULL for create_job.
 * Returns true, so that a set-based statement can check in its WHERE
 * clause.
 */
Datum
workflow_check_job_args(PG_FUNCTION_ARGS)
{
	bool		bulk = !PG_ARGISNULL(3);
	int32		element = bulk ? PG_GETARG_INT32(3) : 0;
	Jsonb	   *params;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job params must not be null"),
				 bulk ? errdetail("The error is in element %d of the arrays.", element) : 0));
	params = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(params))
	{
		char	   *type = TextDatumGetCString(DirectFunctionCall1(jsonb_typeof,
																   JsonbPGetDatum(params)));

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job params must be a JSON object"),
				 bulk ? errdetail("Element %d of params is a JSON %s.", element, type)
				 : errdetail("The value given is a JSON %s.", type)));
	}
	if (!bulk)
		workflow_check_payload_size(PG_GETARG_DATUM(0), "job params");
	else if (toast_raw_datum_size(PG_GETARG_DATUM(0)) - VARHDRSZ > (Size) workflow_max_payload_size * 1024)
		workflow_check_payload_size(PG_GETARG_DATUM(0),
									psprintf("job params of element %d", element));

	for (i = 1; i <= 2; i++)
	{
		text	   *value;

		if (PG_ARGISNULL(i))
			continue;
		value = PG_GETARG_TEXT_PP(i);
		if (VARSIZE_ANY_EXHDR(value) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("target and idempotency key must not be empty strings"),
					 bulk ? errdetail("The error is in element %d of the arrays.", element) : 0,
					 errhint("Pass NULL for a job without a target or idempotency key.")));
		/* characters, not bytes: no multibyte string under 1001 bytes can be longer */
		if (VARSIZE_ANY_EXHDR(value) > 1000 &&
			pg_mbstrlen_with_len(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value)) > 1000)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("target and idempotency key must not be longer than 1000 characters"),
					 bulk ? errdetail("The error is in element %d of the arrays.", element) : 0));
	}
	PG_RETURN_BOOL(true);
}
