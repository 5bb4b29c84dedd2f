-- Export the snapshot every pg_dump of this backup set will share, with where it stands in WAL.
-- Runs as the first statement of a REPEATABLE READ transaction, so the baselines counted in the
-- same transaction see exactly the rows the dumps contain.
SELECT pg_export_snapshot() AS snapshot_id,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS wal_lsn,
       pg_current_snapshot()::text AS txid_snapshot,
       clock_timestamp() AS taken_at;
