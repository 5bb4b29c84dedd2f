-- How many rows of a table break one of its foreign keys; no row when it holds. {batch} is left
-- for GX: the child table's asset. {child_key_not_null} and {key_matches} are conditions on the
-- key columns (child.col IS NOT NULL ..., parent.col = child.col ...); {referenced_table} is a
-- quoted relation name. MATCH SIMPLE, as PostgreSQL checks it: a row with any NULL key column
-- references nothing.
SELECT count(*) AS orphan_rows
FROM (SELECT * FROM {batch}) AS child
WHERE {child_key_not_null}
  AND NOT EXISTS (SELECT 1 FROM {referenced_table} AS parent WHERE {key_matches})
HAVING count(*) > 0;
