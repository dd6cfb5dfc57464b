-------------------------------------------------------------------------------
-- Row-level security: a role sees the jobs it created (and their task runs
-- and info, and the targets they hold), administrators see all (the
-- grants: 90_privileges.sql)
-------------------------------------------------------------------------------

ALTER TABLE workflow.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow.task_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow.job_info ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow.target_locks ENABLE ROW LEVEL SECURITY;

CREATE POLICY jobs_own ON workflow.jobs FOR SELECT
    USING (created_by = (SELECT pg_catalog.to_regrole(pg_catalog.quote_ident(current_user)))
           OR pg_catalog.pg_has_role(current_user, 'workflow_admin', 'MEMBER'));
COMMENT ON POLICY jobs_own ON workflow.jobs IS
    'a role sees the jobs it created; members of workflow_admin see all';
CREATE POLICY task_runs_own ON workflow.task_runs FOR SELECT
    USING (EXISTS (SELECT 1 FROM workflow.jobs j WHERE j.id = job_id));
COMMENT ON POLICY task_runs_own ON workflow.task_runs IS
    'the task runs of the jobs the role sees';
CREATE POLICY job_info_own ON workflow.job_info FOR SELECT
    USING (EXISTS (SELECT 1 FROM workflow.jobs j WHERE j.id = job_id));
COMMENT ON POLICY job_info_own ON workflow.job_info IS
    'the info of the jobs the role sees';
-- "why is my job still queued?": which job holds the target
CREATE POLICY target_locks_own ON workflow.target_locks FOR SELECT
    USING (owner = (SELECT pg_catalog.to_regrole(pg_catalog.quote_ident(current_user)))
           OR pg_catalog.pg_has_role(current_user, 'workflow_admin', 'MEMBER'));
COMMENT ON POLICY target_locks_own ON workflow.target_locks IS
    'a role sees the targets its jobs hold; members of workflow_admin see all';
