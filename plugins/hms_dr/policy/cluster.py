"""The policy's ``cluster:`` section: which PostgreSQL cluster and database are protected, and the
Airflow Connections that log in to it (the backup role, the replication role) and to the separate
server that restore tests and DR restores restore into."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hms_dr.policy.reader import PolicyReader

_CLUSTER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class ClusterPolicy:
    name: str
    database: str
    connection_id: str
    # postgres Connection as the replication role (hms_replica): pg_basebackup logs in with it
    replication_connection_id: str = "hms_replication"
    # postgres Connection to the restore-target server (a role that may CREATE DATABASE there):
    # restore tests and DR restores build their scratch databases on it, never on production.
    restore_target_connection_id: str = "hms_restore_target"


def parse_cluster(reader: PolicyReader) -> ClusterPolicy:
    """The ``cluster:`` section; the replication and restore-target connection ids are optional."""
    section = reader.data["cluster"]
    return ClusterPolicy(
        name=reader.matching("cluster.name", _CLUSTER_NAME, "lower-case letters, digits, '.', '_' or '-'"),
        database=reader.text("cluster.database"),
        connection_id=reader.text("cluster.connection_id"),
        replication_connection_id=(
            reader.text("cluster.replication_connection_id")
            if section.get("replication_connection_id") is not None
            else ClusterPolicy.replication_connection_id
        ),
        restore_target_connection_id=(
            reader.text("cluster.restore_target_connection_id")
            if section.get("restore_target_connection_id") is not None
            else ClusterPolicy.restore_target_connection_id
        ),
    )
