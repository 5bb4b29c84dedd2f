-- Which of the baseline's tables and views exist in the restored database, and which of them
-- are parents (partitioned, or with inheritance children). %(names)s is a text[] of
-- schema-qualified names; the name after the first dot is the relation's, dots and all.
SELECT name,
       oid IS NOT NULL AS present,
       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = oid) AS has_children
FROM (SELECT name,
             to_regclass(quote_ident(split_part(name, '.', 1)) || '.'
                         || quote_ident(substr(name, strpos(name, '.') + 1))) AS oid
      FROM unnest(%(names)s::text[]) AS name) AS relations;
