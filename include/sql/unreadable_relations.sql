-- Tables, sequences and materialized views in the backup's scope that the current role cannot
-- read: pg_dump would stop half-way on the first of them.
-- %(schemas)s is a text[]; empty means every non-system schema.
SELECT n.nspname AS schema_name, c.relname AS relation_name, c.relkind::text AS relkind
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S', 'm')
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND (cardinality(%(schemas)s::text[]) = 0 OR n.nspname = ANY (%(schemas)s::text[]))
  AND NOT has_table_privilege(c.oid, 'SELECT')
ORDER BY 1, 2
LIMIT 20;
