"""The manifest: the one file that makes a backup set exist.

A set's ``manifest.json`` is written last, after every payload is stored and verified; it lists
each payload with its size and the sha256 of the stored bytes, the tools and server that produced
it, and the baselines a restore is checked against. Readers refuse a ``format_version`` they do
not know rather than guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hms_dr.errors import ManifestInvalid

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
# A logical set's "archive_format": "custom" (one pg_dump -Fc payload; also what a manifest without
# the field means, as every set before directory dumps) or "directory" (pg_dump -Fd: one payload
# per file of the dump's directory, named <label>.dir.<file>[.zst|.gz].gpg).
ARCHIVE_FORMAT_FIELD = "archive_format"
CUSTOM_ARCHIVE = "custom"
DIRECTORY_ARCHIVE = "directory"
_DIRECTORY_MARK = ".dir."


class BackupKind(StrEnum):
    """The kinds of backup set; each is a folder level in the store: <cluster>/<kind>/<id>/."""

    LOGICAL = "logical"  # pg_dump -Fc of the whole database
    SCHEMA = "schema"  # pg_dump --schema-only, plain SQL
    DATA = "data"  # pg_dump --data-only of the policy's tables
    BASE = "base"  # pg_basebackup
    WAL = "wal"  # archived WAL segments
    RESTORE_TEST = "restore-test"  # restore-test reports


@dataclass(frozen=True)
class Payload:
    """One stored file of a set: its name inside the set folder and the proof of its bytes."""

    name: str
    size_bytes: int
    sha256: str
    format: str
    plain_size_bytes: int | None = None
    plain_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "format": self.format,
            "plain_size_bytes": self.plain_size_bytes,
            "plain_sha256": self.plain_sha256,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Payload:
        return cls(
            name=str(data["name"]),
            size_bytes=int(data["size_bytes"]),
            sha256=str(data["sha256"]),
            format=str(data["format"]),
            plain_size_bytes=None if data.get("plain_size_bytes") is None else int(data["plain_size_bytes"]),
            plain_sha256=data.get("plain_sha256"),
        )


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. ``body`` keeps every field, including kind-specific ones (baselines...)."""

    kind: BackupKind
    backup_set_id: str
    cluster: str
    started_at: datetime
    finished_at: datetime
    payloads: tuple[Payload, ...]
    body: Mapping[str, Any]

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.payloads)

    @property
    def baselines(self) -> Mapping[str, Any]:
        return self.body.get("baselines") or {}

    def payload(self, name: str) -> Payload:
        for payload in self.payloads:
            if payload.name == name:
                return payload
        raise ManifestInvalid(f"backup set {self.kind.value}/{self.backup_set_id} has no payload named {name!r}")


def archive_format(manifest: Manifest) -> str:
    """CUSTOM_ARCHIVE or DIRECTORY_ARCHIVE: how a logical set's dump is stored (absent: custom)."""
    found = manifest.body.get(ARCHIVE_FORMAT_FIELD) or CUSTOM_ARCHIVE
    if found not in (CUSTOM_ARCHIVE, DIRECTORY_ARCHIVE):
        raise ManifestInvalid(
            f"backup set {manifest.kind.value}/{manifest.backup_set_id} has archive_format {found!r};"
            f" this hms-dr reads {CUSTOM_ARCHIVE} and {DIRECTORY_ARCHIVE}"
        )
    return str(found)


def directory_payload_name(label: str, member: str, suffix: str) -> str:
    """The payload holding the file ``member`` of a directory dump (``suffix``: .zst.gpg, .gpg...)."""
    return f"{label}{_DIRECTORY_MARK}{member}{suffix}"


def directory_member(payload_name: str) -> str:
    """The dump directory's file a payload holds (directory_payload_name backwards); ManifestInvalid
    for a name that is not one, so a restore never writes outside the directory it rebuilds."""
    _, mark, rest = payload_name.partition(_DIRECTORY_MARK)
    member = rest.removesuffix(".gpg").removesuffix(".zst").removesuffix(".gz")
    if not mark or not member or "/" in member or member in (".", ".."):
        raise ManifestInvalid(f"payload {payload_name!r} is not a file of a directory dump")
    return member


def build_manifest(
    *,
    kind: BackupKind,
    backup_set_id: str,
    cluster: str,
    started_at: datetime,
    finished_at: datetime,
    payloads: list[Payload],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest document for a set; ``extra`` adds the kind's own fields (baselines, LSNs...)."""
    reserved = {"format_version", "kind", "backup_set_id", "cluster", "started_at", "finished_at", "payloads"}
    clash = reserved.intersection(extra)
    if clash:
        raise ValueError(f"manifest extra fields may not redefine {sorted(clash)}")
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": kind.value,
        "backup_set_id": backup_set_id,
        "cluster": cluster,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "payloads": [p.to_dict() for p in payloads],
    }
    document.update(extra)
    return document


def dump_manifest(document: Mapping[str, Any]) -> bytes:
    """Serialise a manifest: sorted keys and a trailing newline, so sets diff cleanly."""
    parse_manifest(json.dumps(document).encode(), where="<new manifest>")  # never write what we cannot read
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(raw: bytes, *, where: str) -> Manifest:
    """Parse and check a manifest; ``where`` names it in errors (its store location)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalid(f"manifest {where} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestInvalid(f"manifest {where} is not a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestInvalid(f"manifest {where} has format_version {version!r}; this hms-dr reads {FORMAT_VERSION}")
    try:
        kind = BackupKind(data["kind"])
        payloads = tuple(Payload.from_dict(p) for p in data["payloads"])
        manifest = Manifest(
            kind=kind,
            backup_set_id=str(data["backup_set_id"]),
            cluster=str(data["cluster"]),
            started_at=parse_utc(data["started_at"]),
            finished_at=parse_utc(data["finished_at"]),
            payloads=payloads,
            body=data,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestInvalid(f"manifest {where} is missing or has a malformed field: {exc}") from exc
    names = [p.name for p in payloads]
    if len(set(names)) != len(names):
        raise ManifestInvalid(f"manifest {where} lists a payload twice")
    for payload in payloads:
        if "/" in payload.name or payload.name in ("", ".", "..", MANIFEST_NAME):
            raise ManifestInvalid(f"manifest {where} names an invalid payload {payload.name!r}")
        if len(payload.sha256) != 64:
            raise ManifestInvalid(f"manifest {where}: payload {payload.name} has no sha256")
    return manifest


def new_backup_set_id(now: datetime) -> str:
    """A sortable UTC id, e.g. 20261124T020000Z."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_backup_set_id(backup_set_id: str) -> datetime:
    try:
        return datetime.strptime(backup_set_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ManifestInvalid(f"{backup_set_id!r} is not a backup set id (YYYYMMDDTHHMMSSZ)") from None


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("manifest timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return moment.astimezone(UTC)
