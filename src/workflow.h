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

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

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
extern bool workflow_enabled;
extern int	workflow_max_payload_size;

/*
 * One entry per PGPROC: a backend (runner or long-polling worker) that is
 * waiting for work announces here which queue it waits on, so that a
 * committing transaction can set exactly the latches that matter.
 */
typedef struct WorkflowWaiter
{
	pg_atomic_uint32 waiting;	/* 1 while the backend sleeps for work */
	uint32		queue;			/* hash of the queue waited on; 0 = runners */
	PGPROC	   *proc;			/* whose latch to set */
} WorkflowWaiter;

/* the shared-memory area of the extension */
typedef struct WorkflowShared
{
	pg_atomic_uint64 wakeups;	/* latches set by committing transactions */
	int			nwaiters;		/* entries in waiters[] */
	WorkflowWaiter waiters[FLEXIBLE_ARRAY_MEMBER];
} WorkflowShared;

extern WorkflowShared *WorkflowShmem;

/* src/workflow.c */
extern void workflow_require_shmem(void);

/* src/wakeup.c */
extern Size workflow_wakeup_shmem_size(void);
extern void workflow_wakeup_shmem_init(WorkflowShared *shared);
extern uint32 workflow_queue_hash(const char *queue);
extern void workflow_wake_queue_at_commit(uint32 queue);
extern void workflow_wait_begin(uint32 queue);
extern void workflow_wait_end(void);

#endif							/* WORKFLOW_H */
