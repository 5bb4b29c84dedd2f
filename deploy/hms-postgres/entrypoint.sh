#!/bin/sh
# hms-postgres entrypoint: give the WAL spool volume to the server user, then hand over to the
# postgres image's own entrypoint (initdb on first start, /docker-entrypoint-initdb.d, postgres).
# A fresh named volume is root-owned, and archive_wal.sh (run by the server) must write there.
set -eu
spool=${HMS_WAL_SPOOL_DIR:?HMS_WAL_SPOOL_DIR is not set}
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$spool"
    chown postgres:postgres "$spool"
    chmod 0700 "$spool"
fi
exec docker-entrypoint.sh "$@"
