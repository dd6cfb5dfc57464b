-- bench/sql/first_insert.sql (pgbench -C): the first statement of a new
-- connection, a plain INSERT of one (finished) job row: what opening
-- workflow.jobs (its indexes, policies, triggers) costs a fresh backend.
INSERT INTO workflow.jobs (workflow_id, workflow, version, execution, created_by, finished_at)
SELECT w.id, w.name, w.version, 'succeeded', to_regrole(current_user), now()
  FROM workflow.workflows w WHERE w.name = 'noop' ORDER BY w.version DESC LIMIT 1;
