-- The settings WAL archiving and base backups rely on, as the current role may read them:
-- archive_command is hidden from roles without pg_read_all_settings (then no row), and
-- archive_library (15+) and summarize_wal (17+) only exist on newer servers.
SELECT name, setting
  FROM pg_catalog.pg_settings
 WHERE name IN ('archive_mode', 'archive_command', 'archive_library', 'wal_level', 'summarize_wal', 'server_version_num');
