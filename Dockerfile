# syntax=docker/dockerfile:1
# hms-dr's Airflow image for docker-compose.yaml: the official Airflow 3.3.2 image plus the
# PostgreSQL server and client tools of one major, the build argument PG_MAJOR (pg_dump,
# pg_restore, pg_basebackup, pg_verifybackup, pg_amcheck; initdb/pg_ctl/postgres for
# point-in-time recovery on the database-host worker), gnupg, zstd, and hms-dr's pinned Python
# dependencies. dags/ and plugins/ are mounted by compose; include/ is copied in (and mounted
# over, so an edit needs no rebuild).
#
#   docker compose build                       # PG_MAJOR=15, the default
#   HMS_PG_MAJOR=18 docker compose build       # compose passes HMS_PG_MAJOR as PG_MAJOR
#   docker build --build-arg PG_MAJOR=18 .     # without compose
#
# Python 3.11: the interpreter constraints.txt was resolved and tested with (the image's default
# Python is newer). Base OS: Debian 12 "bookworm", the base of the apache/airflow 3.3 images.
# Its own archive ships PostgreSQL 15 only (security updates through debian-security), so 15
# needs no third-party apt repository; every other major (13 and later: hms-dr's floor) comes
# from the PostgreSQL project's repository apt.postgresql.org (PGDG, bookworm-pgdg main), added
# the documented way: apt.postgresql.org.sh from Debian's postgresql-common, whose signing key
# ships in that package (no key is fetched over the network). On another Debian release the build
# stops below: its archive and PGDG's suite name differ.
FROM apache/airflow:3.3.2-python3.11

USER root
# The PostgreSQL OS user gets the uid of the postgres image's server user (999): the
# database-host worker runs as it, reads the WAL spool that archive_wal.sh writes (mode 0600)
# and owns the data directories it recovers. Created before postgresql-common would pick a uid.
ARG PG_UID=999
# The PostgreSQL major (13 or later). For any but 15, apt.postgresql.org.sh -y writes
# /etc/apt/sources.list.d/pgdg.sources (bookworm-pgdg main, Signed-By the key from
# postgresql-common) and runs apt-get update.
ARG PG_MAJOR=15
RUN set -eux; \
    . /etc/os-release; \
    if [ "${VERSION_CODENAME}" != "bookworm" ]; then \
        echo "expected Debian 12 (bookworm), found ${PRETTY_NAME}: adapt the PostgreSQL install to its archive and PGDG suite" >&2; \
        exit 1; \
    fi; \
    case "${PG_MAJOR}" in \
        ''|*[!0-9]*) echo "PG_MAJOR must be a PostgreSQL major version such as 15 or 18, not '${PG_MAJOR}'" >&2; exit 1 ;; \
    esac; \
    if [ "${PG_MAJOR}" -lt 13 ]; then \
        echo "PG_MAJOR=${PG_MAJOR}: hms-dr supports PostgreSQL 13 and later" >&2; \
        exit 1; \
    fi; \
    groupadd --system --gid "${PG_UID}" postgres; \
    useradd --system --uid "${PG_UID}" --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres; \
    mkdir -p /etc/postgresql-common/createcluster.d; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/hms-dr.conf; \
    apt-get update; \
    if [ "${PG_MAJOR}" != 15 ]; then \
        apt-get install -y --no-install-recommends postgresql-common ca-certificates; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends \
        postgresql-${PG_MAJOR} \
        postgresql-client-${PG_MAJOR} \
        gnupg \
        zstd; \
    apt-get autoremove -yqq --purge; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    /usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump --version; \
    /usr/lib/postgresql/${PG_MAJOR}/bin/initdb --version; \
    gpg --version | head -n 1; \
    zstd --version
# No HMS_DR_PG_BIN: hms-dr finds the tools itself in /usr/lib/postgresql/<major>/bin (the Debian
# and PGDG layout installed above), so the image needs no setting per major and a second major
# installed later is found too. HMS_DR_PG_BIN_<major> in the environment would override it.

# hms-dr's pinned dependencies, plus the CeleryExecutor's provider pinned against the same
# constraints, resolved in one pip run; installed as the airflow user into Airflow's environment.
USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/hms-dr/
COPY --chown=airflow:0 deploy/requirements.celery.txt /opt/hms-dr/deploy/
RUN pip install --no-cache-dir \
        -r /opt/hms-dr/requirements.txt \
        -r /opt/hms-dr/deploy/requirements.celery.txt \
        -c /opt/hms-dr/constraints.txt \
    && python -c "import airflow.providers.celery.executors.celery_executor, airflow.providers.amazon.aws.hooks.s3, airflow.providers.postgres.hooks.postgres, psycopg, yaml, great_expectations" \
    && airflow version

COPY --chown=airflow:0 include/ /opt/airflow/include/
USER airflow
