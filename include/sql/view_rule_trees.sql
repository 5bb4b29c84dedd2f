-- The rewritten query tree (pg_rewrite.ev_action, as node text) of a view or materialized view
-- named in the policy and of every view it reads, recursively (views reading views are recorded
-- in pg_depend). A catalog query: no row of the view is read.
-- %(name)s is the policy's name (to_regclass resolves it); no row when it is a table.
WITH RECURSIVE reads(view_oid, depth) AS (
    SELECT c.oid, 0
      FROM pg_catalog.pg_class c
     WHERE c.oid = to_regclass(%(name)s) AND c.relkind IN ('v', 'm')
    UNION
    SELECT d.refobjid, reads.depth + 1
      FROM reads
      JOIN pg_catalog.pg_rewrite r ON r.ev_class = reads.view_oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
                                 AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> reads.view_oid
      JOIN pg_catalog.pg_class c ON c.oid = d.refobjid AND c.relkind IN ('v', 'm')
     WHERE reads.depth < 32
)
SELECT format('%%I.%%I', n.nspname, c.relname) AS view_name, r.ev_action::text AS rule_tree
  FROM (SELECT view_oid, min(depth) AS depth FROM reads GROUP BY view_oid) AS v
  JOIN pg_catalog.pg_class c ON c.oid = v.view_oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
 ORDER BY v.depth, 1;
