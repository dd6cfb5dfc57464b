-------------------------------------------------------------------------------
-- Types
-------------------------------------------------------------------------------

CREATE TYPE workflow.execution AS ENUM
    ('queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled');
COMMENT ON TYPE workflow.execution IS
    'state of a job: queued, running, waiting, or one of the terminal states succeeded, failed, canceled';

CREATE TYPE workflow.phase AS ENUM ('chain', 'onerror', 'oncancel');
COMMENT ON TYPE workflow.phase IS
    'which chain of a workflow a job is executing: chain, onerror or oncancel';

-- The outcome of a task an in-server runner ran, as src/runner.c reports
-- it to workflow._runner_record: the labels of WorkflowOutcome
-- (src/workflow.h, src/names.c), in its order.  Internal: only the runners
-- (the extension owner) use it.
CREATE TYPE workflow.outcome AS ENUM
    ('succeeded', 'failed', 'fatal', 'requeue', 'wait', 'wait_step', 'timeout', 'release', 'return');
COMMENT ON TYPE workflow.outcome IS
    'internal: the outcome of a task an in-server runner ran, recorded by _runner_record (src/README.md, "The job state machine")';
REVOKE ALL ON TYPE workflow.outcome FROM PUBLIC;

CREATE TYPE workflow.task AS (
    job_id           bigint,
    task             text,
    task_type        text,
    domain           text,
    input            jsonb,
    attempt          integer,
    lease            bigint,
    lease_expires_at timestamptz
);
COMMENT ON TYPE workflow.task IS
    'an external task handed to a worker by poll_tasks: its job, input (the job context), attempt and lease';
