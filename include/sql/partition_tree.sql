-- A table and, when it is partitioned, every partition at every level of sub-partitioning, and
-- whether each is a leaf (only leaves hold rows; a plain table is its own leaf). %(name)s is text
-- to_regclass reads (each part quoted). pg_dump --table=<parent> dumps none of the partitions'
-- rows (15), so a data-only export names the leaves. No row for a view.
SELECT n.nspname AS schema_name, c.relname AS table_name, t.isleaf AS is_leaf
FROM pg_partition_tree(to_regclass(%(name)s)) AS t
JOIN pg_class c ON c.oid = t.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY t.level, n.nspname, c.relname;
