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
 * Random bytes drawn ahead: one pg_strong_random() call serves a claim's
 * batch rather than one job.  The buffer is this process's own (filled
 * after the fork, never by the postmaster), and a value taken from it is
 * never given twice.
 */
#define LEASE_POOL_SIZE 64

static uint64 lease_pool[LEASE_POOL_SIZE];
static int	lease_pool_left = 0;

/*
 * workflow._new_lease() returns bigint: a random lease in 1 .. 2^63 - 1.
 */
Datum
workflow_new_lease(PG_FUNCTION_ARGS)
{
	uint64		value;

	do
	{
		if (lease_pool_left == 0)
		{
			if (!pg_strong_random(lease_pool, sizeof(lease_pool)))
				elog(ERROR, "could not generate a random lease");
			lease_pool_left = LEASE_POOL_SIZE;
		}
		value = lease_pool[--lease_pool_left] & PG_INT64_MAX;
		/* not readable from this process's memory once given */
		lease_pool[lease_pool_left] = 0;
	} while (value == 0);

	PG_RETURN_INT64((int64) value);
}
