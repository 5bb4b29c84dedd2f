-- The named parts of one table (%(oid)s) that a restore brings from the backup: indexes,
-- constraints other than foreign keys, triggers and row-security policies (kind, name).
SELECT 'index' AS kind, ic.relname::text AS name
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %(oid)s
UNION ALL
SELECT 'constraint', conname::text FROM pg_catalog.pg_constraint WHERE conrelid = %(oid)s AND contype <> 'f'
UNION ALL
SELECT 'trigger', tgname::text FROM pg_catalog.pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal
UNION ALL
SELECT 'policy', polname::text FROM pg_catalog.pg_policy WHERE polrelid = %(oid)s
ORDER BY 1, 2;
