-- bench/sql/first_select1.sql (pgbench -C): the first statement of a new
-- connection, doing nothing: what any first statement costs.
SELECT 1;
