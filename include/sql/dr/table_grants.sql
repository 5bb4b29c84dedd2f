-- The privileges granted on one table or sequence (%(oid)s) and on its columns, to anyone but
-- its owner (whose privileges come with ownership): grantee (PUBLIC for everyone), privilege,
-- WITH GRANT OPTION, and the column (NULL for the whole relation).
SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(e.grantee)::text END AS grantee,
       e.privilege_type::text, e.is_grantable, NULL::text AS column_name
FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) e
WHERE c.oid = %(oid)s AND e.grantee <> c.relowner
UNION ALL
SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(e.grantee)::text END,
       e.privilege_type::text, e.is_grantable, a.attname::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL,
     pg_catalog.aclexplode(a.attacl) e
WHERE c.oid = %(oid)s AND e.grantee <> c.relowner
ORDER BY 4 NULLS FIRST, 1, 2;
