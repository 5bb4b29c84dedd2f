-- The foreign keys one table (%(oid)s) holds: name and definition (schema-qualified when read
-- with search_path = pg_catalog).
SELECT con.conname::text, pg_catalog.pg_get_constraintdef(con.oid)
FROM pg_catalog.pg_constraint con
WHERE con.contype = 'f' AND con.conparentid = 0 AND con.conrelid = %(oid)s
ORDER BY 1;
