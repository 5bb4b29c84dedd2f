#!/bin/bash
# First start only (postgres image, /docker-entrypoint-initdb.d): the HMS roles, database, schema,
# demo data and views from include/sql/hms, in the order hms_sandbox.hmsdb loads them:
#   1. roles.sql, then the login passwords of hms_admin, hms_backup, hms_replica (from env),
#      then CREATE DATABASE hospital_management OWNER hms_admin (template0, UTF8, C collation);
#   2. in the new database, ONE transaction as hms_admin: the load settings, hms.scale_mb,
#      schema.sql, generate.sql, constraints.sql, views.sql, ANALYZE of the public tables, and
#      the database comment recording the scale.
# Passwords reach psql through the environment, read by a backquoted printenv (never argv; psql's
# \getenv would do, but only from psql 15 on, and this runs with the server's major's psql), and
# statement logging is off meanwhile.
set -euo pipefail
sql_dir=${HMS_DR_INCLUDE:?HMS_DR_INCLUDE is not set}/sql/hms
database=${HMS_DATABASE:-hospital_management}
scale=${HMS_DEMO_SCALE_MB:-50}
: "${HMS_ADMIN_PASSWORD:?HMS_ADMIN_PASSWORD is not set}"
: "${HMS_BACKUP_PASSWORD:?HMS_BACKUP_PASSWORD is not set}"
: "${HMS_REPLICA_PASSWORD:?HMS_REPLICA_PASSWORD is not set}"
if ! [[ $scale =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $scale =~ ^0+(\.0+)?$ ]]; then
    echo "20-hms-database: HMS_DEMO_SCALE_MB must be a positive number, got '$scale'" >&2
    exit 1
fi
for name in roles.sql schema.sql generate.sql constraints.sql views.sql; do
    [[ -r $sql_dir/$name ]] || { echo "20-hms-database: $sql_dir/$name is missing" >&2; exit 1; }
done
export HMS_DATABASE_NAME=$database HMS_SCALE_MB=$scale
# \i takes paths relative to the working directory.
cd "$sql_dir"
psql=(psql -X -v ON_ERROR_STOP=1 --username "$POSTGRES_USER")

echo "20-hms-database: roles and database $database"
"${psql[@]}" --dbname postgres <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
\i roles.sql
\set admin_password `printenv HMS_ADMIN_PASSWORD`
\set backup_password `printenv HMS_BACKUP_PASSWORD`
\set replica_password `printenv HMS_REPLICA_PASSWORD`
ALTER ROLE hms_admin PASSWORD :'admin_password';
ALTER ROLE hms_backup PASSWORD :'backup_password';
ALTER ROLE hms_replica PASSWORD :'replica_password';
\unset admin_password
\unset backup_password
\unset replica_password
\set database `printenv HMS_DATABASE_NAME`
SELECT format('CREATE DATABASE %I OWNER hms_admin TEMPLATE template0 ENCODING %L LC_COLLATE %L LC_CTYPE %L',
              :'database', 'UTF8', 'C', 'C')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SQL

echo "20-hms-database: loading the HMS schema and demo data at scale $scale MB"
"${psql[@]}" --dbname "$database" <<'SQL'
\set scale_mb `printenv HMS_SCALE_MB`
BEGIN;
SET LOCAL ROLE hms_admin;
SELECT set_config('synchronous_commit', 'off', true),
       set_config('maintenance_work_mem', '512MB', true),
       set_config('work_mem', '256MB', true),
       set_config('jit', 'off', true),
       set_config('TimeZone', 'UTC', true),
       set_config('synchronize_seqscans', 'off', true),
       set_config('hms.scale_mb', :'scale_mb', true);
\i schema.sql
\i generate.sql
\i constraints.sql
\i views.sql
-- Inside the load transaction the rows are still our own, so ANALYZE sets no hint bits (with
-- data checksums every hint-bit write would be a full-page image in the WAL).
SELECT 'ANALYZE ' || string_agg(format('%I.%I', schemaname, tablename), ', ' ORDER BY tablename)
FROM pg_tables WHERE schemaname = 'public' \gexec
SELECT format('COMMENT ON DATABASE %I IS %L', current_database(),
              'HMS synthetic demo data (no real patients), scale_mb=' || :'scale_mb') \gexec
COMMIT;
SQL
echo "20-hms-database: $database loaded"
