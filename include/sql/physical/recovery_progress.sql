-- How far a recovering server has replayed: still recovering?, the last replayed WAL position,
-- the commit time of the last transaction replayed, and whether replay has paused (at a target
-- with recovery_target_action = pause).
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_replay_lsn()::text AS replayed_lsn,
       pg_last_xact_replay_timestamp() AS last_transaction_at,
       -- the function refuses to run once the server has left recovery
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS pause_state;
