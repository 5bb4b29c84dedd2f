-- How many rows of a table break one of its foreign keys: always one row (see ObservedRows in
-- hms_dr.quality.plan). {child_table} and {referenced_table} are quoted relation names;
-- {child_key_not_null} and {key_matches} are conditions on the key columns (child.col IS NOT
-- NULL ..., parent.col = child.col ...). ONLY: a parent table's own rows, as the baselines count
-- them (each partition or inheritance child is a baseline table of its own). MATCH SIMPLE, as
-- PostgreSQL checks it: a row with any NULL key column references nothing.
SELECT count(*) AS orphan_rows
FROM ONLY {child_table} AS child
WHERE {child_key_not_null}
  AND NOT EXISTS (SELECT 1 FROM {referenced_table} AS parent WHERE {key_matches})
