/*-------------------------------------------------------------------------
 *
 * lease.c
 *		workflow._new_lease(): the token of a claim.
 *
 * Every claim of a job gives it a new lease, and every report about the
 * claimed task (complete_task, fail_task, extend_task, requeue_task, the
 * runners' record of an outcome) must carry it.  A lease must therefore
 * not be guessable by another worker: it is a random positive 64-bit
 * integer from the operating system's strong random source, not a
 * sequence.  Two claims of one job get the same lease with probability
 * 2^-63; leases are only ever compared together with the job id.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "workflow.h"

PG_FUNCTION_INFO_V1(workflow_new_lease);

/*
 * workflow._new_lease() returns bigint: a random lease in 1 .. 2^63 - 1.
 */
Datum
workflow_new_lease(PG_FUNCTION_ARGS)
{
	uint64		value;

	do
	{
		if (!pg_strong_random(&value, sizeof(value)))
			elog(ERROR, "could not generate a random lease");
		value &= PG_INT64_MAX;
	} while (value == 0);

	PG_RETURN_INT64((int64) value);
}
