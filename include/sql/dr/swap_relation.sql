-- One table a DR swap exchanges (the production table or its restored copy): oid, kind,
-- owner, and what the swap refuses to carry over (partitioning, inheritance, publications).
SELECT c.oid,
       c.relkind::text AS relkind,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       c.relispartition OR c.relkind = 'p'
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS partitioned_or_inherited,
       ARRAY(SELECT p.pubname::text FROM pg_catalog.pg_publication_rel pr
             JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
             WHERE pr.prrelid = c.oid ORDER BY 1) AS publications
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s;
