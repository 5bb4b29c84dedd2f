-- Every column of every table in the restored database's baseline schemas, in order (a GX query
-- asset). {schemas} is a list of quoted text literals, filled in by hms_dr.quality.plan.
SELECT n.nspname || '.' || c.relname AS relation,
       a.attnum AS column_number,
       a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS column_type
FROM pg_catalog.pg_attribute AS a, pg_catalog.pg_class AS c, pg_catalog.pg_namespace AS n
WHERE c.oid = a.attrelid
  AND n.oid = c.relnamespace
  AND c.relkind IN ('r', 'p')
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND n.nspname IN ({schemas});
