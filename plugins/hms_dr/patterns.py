"""The patterns a DAG's form (a Param's JSON-schema ``pattern``) and the engine both check, written
once: what the form accepts, the engine accepts, and what the engine suggests (an integrity
report's DR request), the form accepts.

Each is the bare pattern; ``whole(pattern)`` anchors it for a form, ``matcher(pattern)`` compiles
it for a full match in the engine. The engine reads a table name with ``hms_dr.names``; TABLE is
the same spelling for a form, which cannot run Python.
"""

from __future__ import annotations

import re

BACKUP_SET_ID = r"[0-9]{8}T[0-9]{6}Z"  # manifest.new_backup_set_id: UTC, to the second
BACKUP_ID = rf"latest|{BACKUP_SET_ID}"  # what a form asks for: a set id, or the newest set
IDENTIFIER = r"[a-z_][a-z0-9_]{0,62}"  # a name hms-dr creates (a staging schema): plain, lower case
_NAME_PART = r'(?:[a-z_][a-z0-9_$]{0,62}|"(?:[^"\x00-\x1f\x7f]|""){1,63}")'
TABLE = rf"(?:{_NAME_PART}\.)?{_NAME_PART}"  # [schema.]name as SQL writes it: appointments, public."Order Details"
LSN = r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}"
RESTORE_POINT = r"[A-Za-z0-9_.:-]{1,63}"


def whole(pattern: str) -> str:
    """The pattern anchored at both ends, as a form's JSON schema needs it."""
    return f"^(?:{pattern})$"


def matcher(pattern: str) -> re.Pattern[str]:
    """The pattern compiled for ``fullmatch`` (ASCII classes, as JSON schema's)."""
    return re.compile(pattern, re.ASCII)
