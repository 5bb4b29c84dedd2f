-- The server a backup is taken from: version, recovery state and the size of the database.
SELECT current_setting('server_version_num')::int AS server_version_num,
       current_setting('server_version') AS server_version,
       pg_is_in_recovery() AS in_recovery,
       current_database() AS database_name,
       pg_database_size(current_database()) AS database_size_bytes,
       (SELECT system_identifier FROM pg_control_system())::text AS system_identifier;
