#!/bin/sh
# hms-postgres entrypoint: refuse to start beside another major's cluster, give the WAL spool
# volume to the server user, then hand over to the postgres image's own entrypoint (initdb on
# first start, /docker-entrypoint-initdb.d, postgres).
# A fresh named volume is root-owned, and archive_wal.sh (run by the server) must write there.
set -eu
spool=${HMS_WAL_SPOOL_DIR:?HMS_WAL_SPOOL_DIR is not set}
data=${PGDATA:?PGDATA is not set}
# PG_MAJOR: set by the postgres image, the major of the server about to run.
major=${PG_MAJOR:?PG_MAJOR is not set (the postgres image sets it)}

# PGDATA is <volume>/<major>/docker (the postgres image's layout from 18 on; docker-compose.yaml
# sets it for every major). Without a cluster there the image would run initdb and the HMS init
# scripts: a new, empty hospital database. If the volume already holds a cluster of another
# major (HMS_PG_MAJOR changed), or one of the old layout (the volume was mounted at
# /var/lib/postgresql/data, so the cluster is at its top), that is an upgrade nobody did: stop.
case $data in
    */"$major"/docker) volume=${data%/*/docker} ;;
    *) echo "hms-postgres: PGDATA=$data is not <volume>/$major/docker (see docker-compose.yaml)" >&2; exit 1 ;;
esac
if [ ! -s "$data/PG_VERSION" ]; then
    for found in "$volume/PG_VERSION" "$volume/data/PG_VERSION" "$volume"/*/docker/PG_VERSION; do
        [ -f "$found" ] || continue
        other=$(cat "$found")
        cluster=$(dirname "$found")
        if [ "$other" = "$major" ]; then
            echo "hms-postgres: $cluster holds this major's cluster in the old layout; move its contents into $data (the volume is now mounted at $volume), or this server would create a new, empty one there" >&2
        else
            echo "hms-postgres: $cluster holds a PostgreSQL $other cluster; this server (PostgreSQL $major) would create a new, empty one in $data instead. Set HMS_PG_MAJOR=$other again, or upgrade that cluster into $data first (pg_upgrade, or dump and restore)" >&2
        fi
        exit 1
    done
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$spool"
    chown postgres:postgres "$spool"
    chmod 0700 "$spool"
fi
exec docker-entrypoint.sh "$@"
