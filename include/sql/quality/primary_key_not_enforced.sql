-- One row when a table's primary key is not enforced by PostgreSQL: no valid primary-key
-- constraint on exactly the baseline's key columns, in order. {schema_literal}, {table_literal}
-- and {key_literal} are quoted literals (schema, table, the key columns as a text[]). The
-- unused CTE names {batch} only because Great Expectations asks every such query to; it is
-- never read, so the check costs one catalog lookup whatever the table's size. (No JOIN
-- keyword here: GX fills {batch} differently in queries that have one.)
WITH never_read AS (SELECT * FROM (SELECT * FROM {batch}) AS batch_rows LIMIT 0)
SELECT 'primary key not enforced' AS problem
WHERE NOT EXISTS (
    SELECT 1
    FROM pg_constraint con, pg_index i
    WHERE i.indexrelid = con.conindid
      AND con.conrelid = to_regclass(quote_ident({schema_literal}) || '.' || quote_ident({table_literal}))
      AND con.contype = 'p'
      AND i.indisvalid
      AND ARRAY(SELECT a.attname::text
                FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord), pg_attribute a
                WHERE a.attrelid = con.conrelid AND a.attnum = k.attnum
                ORDER BY k.ord) = {key_literal}::text[]);
