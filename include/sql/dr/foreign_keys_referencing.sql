-- Foreign keys of OTHER tables that reference one table (%(oid)s); %(swapped)s (oid[]) are the
-- tables a swap exchanges, whose own foreign keys it recreates anyway. Read with
-- search_path = pg_catalog, so the definition names every table with its schema.
SELECT cn.nspname::text, cl.relname::text, con.conname::text, pg_catalog.pg_get_constraintdef(con.oid)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class cl ON cl.oid = con.conrelid
JOIN pg_catalog.pg_namespace cn ON cn.oid = cl.relnamespace
WHERE con.contype = 'f'
  AND con.conparentid = 0
  AND con.confrelid = %(oid)s
  AND NOT (con.conrelid = ANY (%(swapped)s::oid[]))
ORDER BY 1, 2, 3;
