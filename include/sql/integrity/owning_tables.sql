-- For each relation pg_amcheck named (schema, name): what it is, and the table a restore would
-- bring back to repair it -- an index's table, a TOAST table's (or TOAST index's) owner, or the
-- table itself. A name no longer in the catalog comes back with NULLs.
WITH named AS (
    SELECT q.ord, q.schema_name, q.relation_name, c.oid, c.relkind
    FROM unnest(%(schemas)s::text[], %(relations)s::text[]) WITH ORDINALITY AS q(schema_name, relation_name, ord)
    LEFT JOIN pg_namespace n ON n.nspname = q.schema_name
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.relation_name
), based AS (
    SELECT named.*, coalesce(i.indrelid, named.oid) AS base_oid
    FROM named LEFT JOIN pg_index i ON i.indexrelid = named.oid
), owned AS (
    SELECT based.*, coalesce((SELECT o.oid FROM pg_class o WHERE o.reltoastrelid = based.base_oid), based.base_oid) AS table_oid
    FROM based
)
SELECT owned.schema_name, owned.relation_name, owned.relkind::text AS relkind,
       tn.nspname AS table_schema, t.relname AS table_name
FROM owned
LEFT JOIN pg_class t ON t.oid = owned.table_oid
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
ORDER BY owned.ord;
