-- Who the backup logs in as, and which of the runbook's predefined roles it holds.
SELECT current_user AS role_name,
       r.rolsuper AS is_superuser,
       r.rolreplication AS can_replicate,
       pg_has_role(current_user, 'pg_read_all_data', 'MEMBER') AS reads_all_data,
       pg_has_role(current_user, 'pg_read_all_settings', 'MEMBER') AS reads_all_settings,
       pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS reads_all_stats
FROM pg_roles r
WHERE r.rolname = current_user;
