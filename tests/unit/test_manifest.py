"""Manifests: written in a fixed form, read strictly, unknown versions refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind, Payload, build_manifest, dump_manifest, new_backup_set_id, parse_manifest

STARTED = datetime(2026, 11, 24, 2, 0, 3, tzinfo=UTC)
FINISHED = datetime(2026, 11, 24, 2, 9, 41, tzinfo=UTC)
PAYLOAD = Payload("dump.pgdump.zst.gpg", 1234, "ab" * 32, "pg_dump_custom", 5678, "cd" * 32)


def document(**extra: object) -> dict:
    return build_manifest(
        kind=BackupKind.LOGICAL,
        backup_set_id=new_backup_set_id(STARTED),
        cluster="hms-primary",
        started_at=STARTED,
        finished_at=FINISHED,
        payloads=[PAYLOAD],
        extra={"baselines": {"tables": {}}, **extra},
    )


def test_round_trip_keeps_every_field() -> None:
    manifest = parse_manifest(dump_manifest(document()), where="test")
    assert manifest.backup_set_id == "20261124T020003Z"
    assert manifest.payload("dump.pgdump.zst.gpg") == PAYLOAD
    assert manifest.finished_at == FINISHED
    assert manifest.size_bytes == 1234
    assert manifest.baselines == {"tables": {}}


def test_unknown_format_version_is_refused_not_guessed() -> None:
    raw = json.loads(dump_manifest(document()))
    raw["format_version"] = 99
    with pytest.raises(ManifestInvalid, match="format_version 99"):
        parse_manifest(json.dumps(raw).encode(), where="s3://b/m.json")


@pytest.mark.parametrize("name", ["../escape", "manifest.json", "", "a/b"])
def test_payload_names_cannot_escape_the_set_folder(name: str) -> None:
    raw = json.loads(dump_manifest(document()))
    raw["payloads"][0]["name"] = name
    with pytest.raises(ManifestInvalid):
        parse_manifest(json.dumps(raw).encode(), where="test")


def test_truncated_manifest_is_invalid() -> None:
    with pytest.raises(ManifestInvalid, match="not valid JSON"):
        parse_manifest(dump_manifest(document())[:50], where="test")


def test_extra_fields_cannot_redefine_the_core_ones() -> None:
    with pytest.raises(ValueError):
        document(kind="base")
