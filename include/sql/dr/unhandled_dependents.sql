-- Objects that depend on one table (%(oid)s) by its oid and that a DR swap does not carry over
-- to the restored table: anything but the views that read it and the foreign keys that
-- reference it (both recreated by the swap) and its own parts. A policy on another table, a
-- function with a SQL-standard body, a rule: the swap is refused and each is named.
SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_catalog.pg_depend d
WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.refobjid = %(oid)s
  AND d.deptype = 'n'
  AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = %(oid)s)
  AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
                       WHERE r.oid = d.objid AND v.relkind = 'v'))
  AND NOT (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                       WHERE c.oid = d.objid AND (c.contype = 'f' OR c.conrelid = %(oid)s)))
ORDER BY 1;
