-- Is the archiver keeping up? pg_stat_archiver, readable by the backup role (pg_read_all_stats).
SELECT archived_count,
       last_archived_wal,
       last_archived_time,
       failed_count,
       last_failed_wal,
       last_failed_time,
       stats_reset,
       now() AS server_now
  FROM pg_catalog.pg_stat_archiver;
