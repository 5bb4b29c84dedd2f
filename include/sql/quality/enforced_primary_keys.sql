-- Which restored tables have a primary key that PostgreSQL itself enforces (a valid, ready
-- primary-key index), and on which columns in order. Such a key is unique and not null by
-- construction, so its rows need no scan. %(names)s is a text[] of schema-qualified names.
SELECT n.nspname || '.' || c.relname AS table_name,
       array_agg(a.attname::text ORDER BY k.ord) AS key_columns
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_index i ON i.indexrelid = con.conindid
CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE con.contype = 'p'
  AND i.indisvalid AND i.indisready
  AND n.nspname || '.' || c.relname = ANY (%(names)s::text[])
GROUP BY 1;
