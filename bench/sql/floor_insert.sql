-- bench/sql/floor_insert.sql (pgbench): one INSERT per transaction.
INSERT INTO bench_insert (payload) VALUES ('{}');
