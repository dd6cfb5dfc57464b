-- bench/sql/floor_claim.sql (pgbench -D rows=N): claim N rows of a bare
-- queue with SKIP LOCKED and mark them done, in one transaction.
WITH c AS (SELECT id FROM bench_queue WHERE NOT done ORDER BY id LIMIT :rows
             FOR UPDATE SKIP LOCKED)
UPDATE bench_queue q SET done = true, done_at = now() FROM c WHERE q.id = c.id;
