#!/bin/sh
# archive_command for the HMS cluster: copy one finished WAL segment into the local spool,
# atomically and durably. The hms_wal_archive DAG ships the spool to the stores.
#
#   archive_command = '/abs/path/include/postgres/archive_wal.sh "%p" "/abs/path/wal-spool"'
#
# PostgreSQL runs this as the server user with the data directory as working directory, and
# retries a segment for as long as this script exits non-zero. So: exit 0 only when the segment
# is safely on disk in the spool; never overwrite a different file of the same name.
set -eu
umask 077

if [ "$#" -ne 2 ]; then
    echo "usage: archive_wal.sh WAL_PATH SPOOL_DIR (from archive_command: \"%p\" \"/spool\")" >&2
    exit 2
fi
src=$1
spool=$2
name=$(basename -- "$src")
dest=$spool/$name

if [ ! -f "$src" ]; then
    echo "archive_wal: source $src is not a file" >&2
    exit 1
fi
if [ ! -d "$spool" ] || [ ! -w "$spool" ]; then
    echo "archive_wal: spool directory $spool is missing or not writable" >&2
    exit 1
fi

if [ -e "$dest" ]; then
    # After a crash PostgreSQL may archive a segment again: the same bytes are a success.
    if cmp -s -- "$src" "$dest"; then
        exit 0
    fi
    echo "archive_wal: refusing to overwrite $dest: it exists with different content than $src" >&2
    exit 1
fi

tmp=$spool/.$name.tmp.$$
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

cp -- "$src" "$tmp"
chmod 0600 -- "$tmp"
sync -- "$tmp"
# PostgreSQL runs a single archiver per cluster, so nothing can create $dest between the check
# above and this rename.
mv -f -- "$tmp" "$dest"
sync -- "$spool"
