-- The foreign keys of every table in one schema (%(schema)s): in a DR restore's disposable
-- source they are dropped before the dump, because the swap recreates production's own.
SELECT cl.relname AS table_name, con.conname AS constraint_name
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class cl ON cl.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace
WHERE con.contype = 'f'
  AND con.conparentid = 0
  AND n.nspname = %(schema)s
ORDER BY 1, 2;
