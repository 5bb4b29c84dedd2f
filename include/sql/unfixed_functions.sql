-- Which of the functions a view calls (%(oids)s, from its query tree: built-in functions are
-- pinned, so pg_depend does not list them) give a value the rows do not fix: volatile ones
-- (random(), clock_timestamp(), nextval()) and the transaction's clock (now() and its synonyms
-- are only STABLE, yet differ between the backup and every restore).
SELECT p.oid::bigint AS function_oid, p.oid::regprocedure::text AS function_name
  FROM pg_catalog.pg_proc p
 WHERE p.oid = ANY (%(oids)s::oid[])
   AND (p.provolatile = 'v'
        OR (p.pronamespace = 'pg_catalog'::regnamespace
            AND p.proname IN ('now', 'transaction_timestamp', 'statement_timestamp')));
