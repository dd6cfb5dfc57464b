/*-------------------------------------------------------------------------
 *
 * names.c
 *		The words that cross the boundary between the C code and the SQL of
 *		the extension: task outcomes (workflow.outcome), phases
 *		(workflow.phase) and task kinds (workflow.tasks.kind).
 *
 * Each is a C enum in workflow.h whose values are in the order of the SQL
 * enum's labels, with one name table here, as pg_cron keeps CronStatus and
 * its names.  C code compares the enum values only: it spells a name when
 * it hands one to SQL (WorkflowOutcomeNames[outcome]) and reads one back in
 * the lookup functions below, nowhere else.  A static assertion keeps
 * every table as long as its enum.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "workflow.h"

/* the labels of workflow.outcome, in the order of WorkflowOutcome */
const char *const WorkflowOutcomeNames[] = {
	[WF_OUTCOME_SUCCEEDED] = "succeeded",
	[WF_OUTCOME_FAILED] = "failed",
	[WF_OUTCOME_FATAL] = "fatal",
	[WF_OUTCOME_REQUEUE] = "requeue",
	[WF_OUTCOME_WAIT] = "wait",
	[WF_OUTCOME_WAIT_STEP] = "wait_step",
	[WF_OUTCOME_TIMEOUT] = "timeout",
	[WF_OUTCOME_RELEASE] = "release",
	[WF_OUTCOME_RETURN] = "return"
};

StaticAssertDecl(lengthof(WorkflowOutcomeNames) == WF_NUM_OUTCOMES,
				 "WorkflowOutcomeNames must name every WorkflowOutcome");

/* the labels of workflow.phase, in the order of WorkflowPhase */
const char *const WorkflowPhaseNames[] = {
	[WF_PHASE_CHAIN] = "chain",
	[WF_PHASE_ONERROR] = "onerror",
	[WF_PHASE_ONCANCEL] = "oncancel"
};

StaticAssertDecl(lengthof(WorkflowPhaseNames) == WF_NUM_PHASES,
				 "WorkflowPhaseNames must name every WorkflowPhase");

/* the values of workflow.tasks.kind, in the order of WorkflowTaskKind */
const char *const WorkflowTaskKindNames[] = {
	[WF_KIND_NONE] = "none",
	[WF_KIND_SQL] = "sql",
	[WF_KIND_EXTERNAL] = "external",
	[WF_KIND_WAIT] = "wait",
	[WF_KIND_PARALLEL] = "parallel",
	[WF_KIND_SWITCH] = "switch",
	[WF_KIND_WORKFLOW] = "workflow",
	[WF_KIND_FOREACH] = "foreach"
};

StaticAssertDecl(lengthof(WorkflowTaskKindNames) == WF_NUM_TASK_KINDS,
				 "WorkflowTaskKindNames must name every WorkflowTaskKind");

/*
 * The WorkflowPhase of a label of workflow.phase.  Anything else cannot
 * come from the database: elog.
 */
WorkflowPhase
workflow_phase_from_name(const char *name)
{
	int			i;

	for (i = 0; i < WF_NUM_PHASES; i++)
		if (strcmp(name, WorkflowPhaseNames[i]) == 0)
			return (WorkflowPhase) i;
	elog(ERROR, "unknown workflow phase \"%s\"", name);
	return WF_PHASE_CHAIN;		/* keep the compiler quiet */
}

/*
 * The WorkflowTaskKind of a value of workflow.tasks.kind; NULL (no task)
 * is WF_KIND_NONE.  Anything else is refused by the table's CHECK: elog.
 */
WorkflowTaskKind
workflow_task_kind_from_name(const char *name)
{
	int			i;

	if (name == NULL)
		return WF_KIND_NONE;
	for (i = WF_KIND_NONE + 1; i < WF_NUM_TASK_KINDS; i++)
		if (strcmp(name, WorkflowTaskKindNames[i]) == 0)
			return (WorkflowTaskKind) i;
	elog(ERROR, "unknown task kind \"%s\"", name);
	return WF_KIND_NONE;		/* keep the compiler quiet */
}
