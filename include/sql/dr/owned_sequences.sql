-- The sequences one table (%(oid)s) owns (identity and serial columns): column, sequence
-- schema and name, its oid.
SELECT a.attname::text AS column_name, sn.nspname::text, s.relname::text, s.oid
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.refobjid = %(oid)s
  AND d.deptype IN ('a', 'i')
ORDER BY a.attnum;
