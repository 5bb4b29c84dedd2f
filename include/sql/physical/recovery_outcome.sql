-- Where a just-promoted server stands: the WAL file it writes now (its first 8 hex digits are
-- the new timeline) and the commit time of the last transaction recovery replayed.
SELECT pg_walfile_name(pg_current_wal_lsn()) AS current_wal_file,
       pg_last_xact_replay_timestamp() AS last_transaction_at;
