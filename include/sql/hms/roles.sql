-- HMS cluster roles. Idempotent: safe to run on every sandbox start.
-- Passwords are NOT set here; the loader (hms_sandbox.hmsdb) sets them with ALTER ROLE.
--   hms_admin    owns the hospital_management database and every object in it
--   hms_backup   read-only backup operator (pg_dump, baselines): predefined read-all roles, no superuser
--   hms_replica  streaming replication / pg_basebackup
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'hms_admin') THEN
        CREATE ROLE hms_admin LOGIN;
    END IF;
    ALTER ROLE hms_admin WITH LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION INHERIT;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'hms_backup') THEN
        CREATE ROLE hms_backup LOGIN;
    END IF;
    ALTER ROLE hms_backup WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'hms_replica') THEN
        CREATE ROLE hms_replica LOGIN REPLICATION;
    END IF;
    ALTER ROLE hms_replica WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE;
END
$roles$;

-- GRANT of a role membership that already exists only raises a NOTICE.
GRANT pg_read_all_data, pg_read_all_settings, pg_read_all_stats TO hms_backup;

COMMENT ON ROLE hms_admin IS 'HMS application owner: owns the hospital_management database objects';
COMMENT ON ROLE hms_backup IS 'HMS backup operator: reads all data, settings and statistics; not a superuser';
COMMENT ON ROLE hms_replica IS 'HMS replication role for pg_basebackup and WAL streaming';
