-- Every table whose rows a logical backup carries, with its columns in order.
-- %(schemas)s is a text[]; empty means every non-system schema. Tables that belong to an
-- extension are left out: pg_dump does not dump their rows either.
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       c.relkind::text AS relkind,
       coalesce(
           json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull)
                    ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL),
           '[]'::json) AS columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND (cardinality(%(schemas)s::text[]) = 0 OR n.nspname = ANY (%(schemas)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
GROUP BY n.nspname, c.relname, c.relkind
ORDER BY 1, 2;
