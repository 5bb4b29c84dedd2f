-- Once per protected database, as a superuser (CREATE EXTENSION amcheck is not a trusted
-- extension): what hms_integrity_check needs. pg_amcheck then runs as the backup role, which
-- may execute exactly the two read-only checks it calls without --parent-check (both take
-- ACCESS SHARE locks only) and nothing else of amcheck. Idempotent.
--   psql -d hospital_management -f include/sql/integrity/install_amcheck.sql
CREATE EXTENSION IF NOT EXISTS amcheck;
GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean) TO hms_backup;
GRANT EXECUTE ON FUNCTION verify_heapam(regclass, boolean, boolean, text, bigint, bigint) TO hms_backup;
