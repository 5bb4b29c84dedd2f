-- Built-in aggregates whose result depends on the order of their input rows (string_agg(x, ',')
-- concatenates in whatever order the plan delivers), and window functions whose result depends
-- on the order within the window: both are fixed only by an ORDER BY. Their oids, for the
-- node-tree check of hms_dr.view_determinism.
SELECT p.oid::bigint AS function_oid, p.proname AS function_name, p.prokind::text AS kind
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'pg_catalog'::regnamespace
   AND ((p.prokind = 'a' AND p.proname IN ('string_agg', 'array_agg', 'json_agg', 'jsonb_agg', 'xmlagg', 'json_object_agg',
                                           'jsonb_object_agg', 'json_agg_strict', 'jsonb_agg_strict', 'json_object_agg_strict',
                                           'jsonb_object_agg_strict', 'json_object_agg_unique', 'jsonb_object_agg_unique',
                                           'json_object_agg_unique_strict', 'jsonb_object_agg_unique_strict'))
        OR (p.prokind = 'w' AND p.proname IN ('row_number', 'ntile', 'lag', 'lead', 'first_value', 'last_value', 'nth_value')));
