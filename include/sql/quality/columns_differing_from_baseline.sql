-- The columns of one table, as a JSON list of [name, type] in order, when they differ from the
-- baseline's; no row when they are the same. {relation_name} and {baseline_columns} are text
-- literals; {batch} is left for GX: the restored_columns asset.
-- jsonb equality compares the lists element by element: names and types, in order.
SELECT observed
FROM (SELECT (SELECT json_agg(json_build_array(column_name, column_type) ORDER BY column_number)
              FROM {batch}
              WHERE relation = {relation_name}) AS observed) AS catalog
WHERE observed::jsonb IS DISTINCT FROM CAST({baseline_columns} AS jsonb);
