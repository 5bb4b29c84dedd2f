#!/usr/bin/env bash
# airflow-init: runs once per `docker compose up`, as root, before any other Airflow service.
#   1. migrates the metadata database (airflow db migrate);
#   2. writes the UI admin's password (AIRFLOW_ADMIN_PASSWORD) for the simple auth manager;
#   3. gives the shared volumes to the users that write them: logs and auth to AIRFLOW_UID
#      (group 0, as Airflow's image expects), the PITR data directory to the PostgreSQL user
#      the database-host worker runs as (HMS_PG_UID).
set -euo pipefail
: "${AIRFLOW_UID:?AIRFLOW_UID is not set}"
: "${HMS_PG_UID:?HMS_PG_UID is not set}"
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD in .env}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"
if [[ $AIRFLOW_UID == 0 ]]; then
    echo "airflow-init: AIRFLOW_UID must not be 0 (root); use the uid that owns the checkout, e.g. \$(id -u)" >&2
    exit 1
fi

echo "airflow-init: migrating the metadata database"
/entrypoint airflow db migrate

passwords=$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
install -d -o "$AIRFLOW_UID" -g 0 -m 0700 "$(dirname "$passwords")"
(
    umask 077
    python - "$passwords" <<'PY'
import json, os, sys
path = sys.argv[1]
with open(path + ".tmp", "w", encoding="utf-8") as out:
    json.dump({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}, out)
os.replace(path + ".tmp", path)
PY
)
chown "$AIRFLOW_UID:0" "$passwords"
echo "airflow-init: UI login admin, password from AIRFLOW_ADMIN_PASSWORD"

mkdir -p /opt/airflow/logs
chown -R "$AIRFLOW_UID:0" /opt/airflow/logs
# The database-host worker runs as HMS_PG_UID in group 0: it writes task logs here too.
chmod -R g+rwX /opt/airflow/logs
install -d -o "$HMS_PG_UID" -g 0 -m 0700 /var/lib/hms-dr/pitr

/entrypoint airflow version
echo "airflow-init: done"
