-- Schema-qualified name and kind of a relation named in the policy (search_path applies to
-- unqualified names); no row when it does not exist.
SELECT n.nspname AS schema_name, c.relname AS relation_name, c.relkind::text AS relkind
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%(name)s);
