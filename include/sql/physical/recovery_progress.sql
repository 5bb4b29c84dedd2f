-- How far a recovering server has replayed: still recovering?, the last replayed WAL position,
-- and the commit time of the last transaction replayed.
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_replay_lsn()::text AS replayed_lsn,
       pg_last_xact_replay_timestamp() AS last_transaction_at;
