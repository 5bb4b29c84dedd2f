-- Where a server paused at its recovery target stands: the last replayed WAL position, the
-- timeline it replays (still the backed-up cluster's: no promotion yet) and the commit time of
-- the last transaction replayed.
SELECT pg_last_wal_replay_lsn()::text AS replayed_lsn,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline,
       pg_last_xact_replay_timestamp() AS last_transaction_at;
