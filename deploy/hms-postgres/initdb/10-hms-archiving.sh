#!/bin/sh
# First start only (postgres image, /docker-entrypoint-initdb.d): the hms-dr server settings.
# Same result as the sandbox's cluster (sandbox/hms_sandbox/cluster.py): include the conf
# fragment include/postgres/postgresql.hms.conf (wal_level=replica, archive_mode=on,
# archive_timeout=60s, max_wal_senders), then archive_command = archive_wal.sh into the spool.
# Data checksums come from POSTGRES_INITDB_ARGS=--data-checksums. Both settings take effect when
# the image's entrypoint restarts the server after these scripts.
set -eu
include_dir=${HMS_DR_INCLUDE:?HMS_DR_INCLUDE is not set}
spool=${HMS_WAL_SPOOL_DIR:?HMS_WAL_SPOOL_DIR is not set}
for path in "$include_dir" "$spool"; do
    case $path in
        /*) ;;
        *) echo "10-hms-archiving: $path must be an absolute path" >&2; exit 1 ;;
    esac
    case $path in
        *[!A-Za-z0-9/._-]*) echo "10-hms-archiving: $path may hold only letters, digits and / . _ -" >&2; exit 1 ;;
    esac
done
fragment=$include_dir/postgres/postgresql.hms.conf
script=$include_dir/postgres/archive_wal.sh
[ -r "$fragment" ] || { echo "10-hms-archiving: $fragment is missing" >&2; exit 1; }
[ -x "$script" ] || { echo "10-hms-archiving: $script is missing or not executable" >&2; exit 1; }
[ -d "$spool" ] && [ -w "$spool" ] || { echo "10-hms-archiving: spool $spool is missing or not writable" >&2; exit 1; }

cat >> "$PGDATA/postgresql.conf" <<CONF

# --- hms-dr (deploy/hms-postgres/initdb/10-hms-archiving.sh) ---
include = '$fragment'
archive_command = '$script "%p" "$spool"'
CONF

# pg_basebackup (hms_weekly_base_backup) streams as hms_replica from the compose network only.
cat >> "$PGDATA/pg_hba.conf" <<HBA

# --- hms-dr: replication for hms_replica from this container's own networks ---
host    replication     hms_replica     samenet                 scram-sha-256
HBA
echo "10-hms-archiving: archiving to $spool with $script"
