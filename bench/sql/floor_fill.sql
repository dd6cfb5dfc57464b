-- bench/sql/floor_fill.sql (psql -v rows=N): a fresh queue of N undone rows.
TRUNCATE bench_queue;
INSERT INTO bench_queue (payload) SELECT '{}' FROM generate_series(1, :rows);
VACUUM ANALYZE bench_queue;
