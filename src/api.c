/*-------------------------------------------------------------------------
 *
 * api.c
 *		How the SQL API knows who calls it.
 *
 * The public functions that act on behalf of a role — create_workflow,
 * create_job, cancel_job, get_job, ... — must know that role exactly: it
 * owns the workflow, it is the job's creator whose identity the job's SQL
 * tasks run with, and it decides which jobs may be seen and changed.  Their
 * implementations are SECURITY DEFINER functions (users have no privilege
 * on the tables), but inside a security-definer function the invoking role
 * is no longer known to SQL: current_user is the definer, and session_user
 * or the SET ROLE setting would credit the outermost role, not a
 * security-definer function of another role in between.
 *
 * So each such public function is this C function, declared SECURITY
 * INVOKER: it reads the current user id — exact, whatever called it — and
 * calls the implementation `workflow._<name>(<same arguments>, caller oid)`
 * directly through fmgr.  Users are granted EXECUTE on the public function
 * only; the implementation is executable by nobody but its owner, which
 * fmgr does not check, so the caller cannot be spoofed.  Set-returning
 * implementations work through the same ReturnSetInfo.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "compat.h"
#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_api_call);

/* the implementation of a public function, cached in its fn_extra */
typedef struct ApiTarget
{
	FmgrInfo	impl;
	int			nargs;			/* of the public function */
} ApiTarget;

/*
 * Find workflow._<name>(<argument types>, oid) for the public function
 * `fn_oid'.
 */
static ApiTarget *
api_target(FmgrInfo *flinfo)
{
	ApiTarget  *target;
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			argtypes[FUNC_MAX_ARGS];
	char	   *implname;
	Oid			impl_oid;
	List	   *qualname;

	if (flinfo->fn_extra != NULL)
		return (ApiTarget *) flinfo->fn_extra;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->pronargs >= FUNC_MAX_ARGS)
		elog(ERROR, "function %u has too many arguments", flinfo->fn_oid);
	memcpy(argtypes, proc->proargtypes.values, proc->pronargs * sizeof(Oid));
	argtypes[proc->pronargs] = OIDOID;
	implname = psprintf("_%s", NameStr(proc->proname));
	qualname = list_make2(makeString(get_namespace_name(proc->pronamespace)),
						  makeString(implname));
	impl_oid = LookupFuncName(qualname, proc->pronargs + 1, argtypes, true);
	if (!OidIsValid(impl_oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("implementation of %s is missing", NameStr(proc->proname)),
				 errhint("The workflow extension's objects do not match its library; run ALTER EXTENSION workflow UPDATE.")));

	target = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(ApiTarget));
	target->nargs = proc->pronargs;
	fmgr_info_cxt(impl_oid, &target->impl, flinfo->fn_mcxt);
	ReleaseSysCache(tup);

	flinfo->fn_extra = target;
	return target;
}

/*
 * The public entry point: call the implementation with the caller's role
 * id appended.
 */
Datum
workflow_api_call(PG_FUNCTION_ARGS)
{
	ApiTarget  *target = api_target(fcinfo->flinfo);
	LOCAL_FCINFO(impl_fcinfo, FUNC_MAX_ARGS);
	Datum		result;
	int			i;

	InitFunctionCallInfoData(*impl_fcinfo, &target->impl, target->nargs + 1,
							 fcinfo->fncollation, fcinfo->context, fcinfo->resultinfo);
	for (i = 0; i < target->nargs; i++)
		impl_fcinfo->args[i] = fcinfo->args[i];
	impl_fcinfo->args[target->nargs].value = ObjectIdGetDatum(GetUserId());
	impl_fcinfo->args[target->nargs].isnull = false;

	result = FunctionCallInvoke(impl_fcinfo);
	fcinfo->isnull = impl_fcinfo->isnull;
	return result;
}

PG_FUNCTION_INFO_V1(workflow_in_server_worker);

/*
 * workflow._in_server_worker() returns text: the runner id of the
 * in-server worker this process is ("runner-N" for the runner of slot N,
 * "sweeper"), or NULL for any other backend.
 *
 * The ids and kinds of the in-server workers are theirs alone: no SQL
 * caller, whatever its role, may register or use them.  Which process
 * calls is known exactly here, from the background worker entry the
 * postmaster started it with, so it cannot be claimed by a client.
 */
Datum
workflow_in_server_worker(PG_FUNCTION_ARGS)
{
	char		id[NAMEDATALEN];

	if (MyBgworkerEntry == NULL ||
		strcmp(MyBgworkerEntry->bgw_library_name, "workflow") != 0)
		PG_RETURN_NULL();
	if (strcmp(MyBgworkerEntry->bgw_function_name, "workflow_runner_main") == 0)
		workflow_runner_id(DatumGetInt32(MyBgworkerEntry->bgw_main_arg), id, sizeof(id));
	else if (strcmp(MyBgworkerEntry->bgw_function_name, "workflow_sweeper_main") == 0)
		strlcpy(id, "sweeper", sizeof(id));
	else
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(id));
}
