/*-------------------------------------------------------------------------
 *
 * plans.c
 *		Statements of the extension's own C code, prepared once per backend
 *		and kept for its life (SPI_keepplan).
 *
 * The runners, the sweeper and the C entry points (complete_task, ...) run
 * the same few statements over and over: each keeps its plan in a static
 * slot, prepared the first time it is needed.  A kept plan is revalidated
 * by the plan cache when the objects it uses change (a new extension after
 * DROP and CREATE EXTENSION, say), so it never has to be dropped by hand.
 * The statements name everything with its schema: they run with the
 * caller's search_path.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "workflow.h"

/*
 * Prepare `sql' into *slot unless it is there already, and keep the plan
 * for the life of the backend.  Must be called while connected to SPI.
 * Returns the plan.
 */
SPIPlanPtr
workflow_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare a statement of the workflow extension: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the plan of a statement of the workflow extension");
		*slot = plan;
	}
	return *slot;
}
