-- The cluster a base backup copies and the role that copies it: version and identity, the WAL
-- settings pg_basebackup relies on, the role's REPLICATION attribute, and how much there is to
-- stage (every database the role may measure; databases it may not are counted apart).
SELECT current_setting('server_version_num')::int AS server_version_num,
       current_setting('server_version') AS server_version,
       pg_is_in_recovery() AS in_recovery,
       (SELECT system_identifier FROM pg_control_system())::text AS system_identifier,
       current_setting('data_checksums')::bool AS data_checksums,
       pg_size_bytes(current_setting('wal_segment_size')) AS wal_segment_size_bytes,
       current_setting('wal_level') AS wal_level,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       -- incremental backups (17+) read the WAL summaries; NULL on servers older than 17
       current_setting('summarize_wal', true) AS summarize_wal,
       -- the timeline the server writes now (an incremental only extends a chain on it): a
       -- primary's from its current WAL file name, a standby's from its last checkpoint
       CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::int END AS timeline,
       -- the streamed method stages the WAL written during the copy: max_wal_size sizes it
       pg_size_bytes(current_setting('max_wal_size')) AS max_wal_size_bytes,
       -- tablespaces of the cluster's own: pg_basebackup writes only one tablespace to a pipe
       (SELECT count(*)::int FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')) AS extra_tablespaces,
       r.rolname AS role_name,
       r.rolreplication AS can_replicate,
       r.rolsuper AS is_superuser,
       (SELECT coalesce(sum(pg_database_size(d.oid)), 0)::bigint
          FROM pg_database d WHERE has_database_privilege(d.oid, 'CONNECT')) AS cluster_size_bytes,
       (SELECT count(*)::int
          FROM pg_database d WHERE NOT has_database_privilege(d.oid, 'CONNECT')) AS databases_not_measured
FROM pg_roles r
WHERE r.rolname = current_user;
