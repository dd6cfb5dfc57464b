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
