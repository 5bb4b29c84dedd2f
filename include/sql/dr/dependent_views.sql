-- Views and materialized views whose query reads one table (%(oid)s): schema, name, kind,
-- definition (schema-qualified when read with search_path = pg_catalog) and options
-- (security_barrier, check_option, ...).
SELECT DISTINCT vn.nspname::text, v.relname::text, v.relkind::text, pg_catalog.pg_get_viewdef(v.oid),
       coalesce(v.reloptions, '{}')::text[]
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.refobjid = %(oid)s
  AND v.oid <> %(oid)s
ORDER BY 1, 2;
