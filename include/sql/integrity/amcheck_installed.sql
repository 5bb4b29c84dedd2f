-- Can the connected role run pg_amcheck here: is the amcheck extension installed (in which
-- schema, which version), and may this role execute the two functions pg_amcheck calls?
SELECT e.extversion AS version,
       n.nspname AS schema_name,
       has_function_privilege(format('%I.bt_index_check(regclass, boolean)', n.nspname), 'EXECUTE') AS may_check_indexes,
       has_function_privilege(format('%I.verify_heapam(regclass, boolean, boolean, text, bigint, bigint)', n.nspname), 'EXECUTE')
           AS may_check_tables
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'amcheck';
