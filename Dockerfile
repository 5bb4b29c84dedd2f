# syntax=docker/dockerfile:1
# hms-dr's Airflow image for docker-compose.yaml: the official Airflow 3.3.2 image plus the
# PostgreSQL 15 server and client tools (pg_dump, pg_restore, pg_basebackup, pg_verifybackup,
# pg_amcheck; initdb/pg_ctl/postgres for point-in-time recovery on the database-host worker),
# gnupg, zstd, and hms-dr's pinned Python dependencies. dags/ and plugins/ are mounted by compose;
# include/ is copied in (and mounted over, so an edit needs no rebuild).
#
# Python 3.11: the interpreter constraints.txt was resolved and tested with (the image's default
# Python is newer). Base OS: Debian 12 "bookworm", the base of the apache/airflow 3.3 images,
# whose own archive ships PostgreSQL 15 (its default major; security updates through
# debian-security), so no third-party apt repository is needed. On another Debian release (13
# "trixie" ships PostgreSQL 17) the build stops below: postgresql-15 then comes from the PGDG
# repository (apt.postgresql.org).
FROM apache/airflow:3.3.2-python3.11

USER root
# The PostgreSQL OS user gets the uid of the postgres image's server user (999): the
# database-host worker runs as it, reads the WAL spool that archive_wal.sh writes (mode 0600)
# and owns the data directories it recovers. Created before postgresql-common would pick a uid.
ARG PG_UID=999
RUN set -eux; \
    . /etc/os-release; \
    if [ "${VERSION_CODENAME}" != "bookworm" ]; then \
        echo "expected Debian 12 (bookworm), found ${PRETTY_NAME}: install postgresql-15 from the PGDG repository" >&2; \
        exit 1; \
    fi; \
    groupadd --system --gid "${PG_UID}" postgres; \
    useradd --system --uid "${PG_UID}" --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres; \
    mkdir -p /etc/postgresql-common/createcluster.d; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/hms-dr.conf; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        postgresql-15 \
        postgresql-client-15 \
        gnupg \
        zstd; \
    apt-get autoremove -yqq --purge; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    /usr/lib/postgresql/15/bin/pg_dump --version; \
    /usr/lib/postgresql/15/bin/initdb --version; \
    gpg --version | head -n 1; \
    zstd --version
ENV HMS_DR_PG_BIN=/usr/lib/postgresql/15/bin

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
