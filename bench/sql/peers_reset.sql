-- bench/sql/peers_reset.sql (database "peers", case 7): empty
-- graphile-worker's job table between runs, so that each starts on a fresh
-- table, and checkpoint, as bench/sql/reset.sql does for workflow's.
TRUNCATE graphile_worker._private_jobs;
CHECKPOINT;
