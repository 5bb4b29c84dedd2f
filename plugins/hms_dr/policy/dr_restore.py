"""The policy's ``dr.restore:`` keys (hms_dr_restore): the production connection the restore and
the swap use, who may approve a swap (four eyes), how long an approval may wait, and how long the
swap waits for its locks.

Every key is optional and defaults as in :class:`DrRestorePolicy`; the rest of ``dr:`` belongs
to ``hms_dr.policy.dr``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hms_dr.policy.reader import PolicyReader

_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
# An Airflow user id as the auth manager reports it (the simple auth manager: the user name, which
# its config cannot hold with ':' or ','; other managers: a number or a login).
_USER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}", re.ASCII)
# The simple auth manager's roles that may answer a form (a viewer may not: the API refuses it).
APPROVER_ROLES = ("user", "op", "admin")


@dataclass(frozen=True)
class DrRestorePolicy:
    # postgres Connection to production's database as a role that may create schemas and
    # databases and alter the restored tables (the owner, or a superuser): the backup role may not.
    admin_connection_id: str = "hms_admin"
    approval_timeout_hours: int = 24  # then the approval fails (and pages): nothing is swapped
    swap_lock_timeout_s: int = 30  # the swap never queues longer than this behind the application
    restore_jobs: int = 2  # pg_restore -j into the scratch database
    # Who may approve a swap into production: these Airflow user ids, and every user of the simple
    # auth manager whose role is one of approver_roles. Nobody by default: a swap is refused until
    # the policy names its approvers.
    approvers: tuple[str, ...] = ()
    approver_roles: tuple[str, ...] = ()
    # Four eyes: the user who triggered a run may not approve its swap, unless this is on (a
    # hospital with a single DBA on call decides that in its policy, not at 3 a.m.).
    allow_self_approval: bool = False


def parse_dr_restore(reader: PolicyReader) -> DrRestorePolicy:
    """The optional ``dr.restore`` mapping."""
    defaults = DrRestorePolicy()
    dr = reader.data.get("dr") or {}
    section = dr.get("restore") if isinstance(dr, dict) else None
    if section is None:
        return defaults
    if not isinstance(section, dict):
        raise reader.fail("dr.restore", f"must be a mapping, got {section!r}")

    def present(name: str) -> bool:
        return section.get(name) is not None

    admin = defaults.admin_connection_id
    if present("admin_connection_id"):
        admin = reader.text("dr.restore.admin_connection_id")
        if not _CONNECTION_ID.match(admin):
            raise reader.fail("dr.restore.admin_connection_id", f"is not an Airflow connection id: {admin!r}")
    return DrRestorePolicy(
        admin_connection_id=admin,
        approval_timeout_hours=(
            reader.integer("dr.restore.approval_timeout_hours", minimum=1, maximum=24 * 14)
            if present("approval_timeout_hours")
            else defaults.approval_timeout_hours
        ),
        swap_lock_timeout_s=(
            reader.integer("dr.restore.swap_lock_timeout_s", minimum=1, maximum=3600)
            if present("swap_lock_timeout_s")
            else defaults.swap_lock_timeout_s
        ),
        restore_jobs=reader.integer("dr.restore.restore_jobs", minimum=1, maximum=16)
        if present("restore_jobs")
        else defaults.restore_jobs,
        approvers=_names(
            reader,
            section,
            "approvers",
            lambda v: _USER_ID.fullmatch(v) is not None,
            "an Airflow user id (letters, digits and _ . @ + -)",
        ),
        approver_roles=tuple(
            role.lower()
            for role in _names(
                reader,
                section,
                "approver_roles",
                lambda v: v.lower() in APPROVER_ROLES,
                f"a simple auth manager role that may answer a form ({', '.join(APPROVER_ROLES)})",
            )
        ),
        allow_self_approval=reader.boolean("dr.restore.allow_self_approval")
        if present("allow_self_approval")
        else defaults.allow_self_approval,
    )


def _names(
    reader: PolicyReader, section: dict[str, Any], name: str, valid: Callable[[str], bool], described: str
) -> tuple[str, ...]:
    """An optional list of names, each one ``valid``; duplicates dropped, order kept."""
    value = section.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader.fail(f"dr.restore.{name}", f"must be a list, each {described}, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not valid(item):
            raise reader.fail(f"dr.restore.{name}", f"holds {item!r}: each must be {described}")
    return tuple(dict.fromkeys(value))
