"""The policy file is validated at parse time, and every bad value names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DEFAULT_POLICY_PATH, CompressionMethod, EncryptionMode, load_policy, parse_policy


def committed() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def with_value(key: str, value: object) -> dict:
    data = copy.deepcopy(committed())
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


def test_committed_policy_is_valid_and_holds_the_runbook_defaults() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.schedules["daily_logical_backup"] == "0 2 * * *"
    assert policy.retention.logical_days == 30
    assert policy.retention.wal_days == 7
    assert policy.retention.base_backups_keep == 4
    assert policy.retention.offsite_days == 90
    assert policy.logical_backup.data_only_tables == ("appointments", "billing")
    assert policy.logical_backup.baseline_views == ("v_patient_summary",)
    assert policy.encryption.mode is EncryptionMode.PUBLIC_KEY
    assert policy.compression.method is CompressionMethod.ZSTD
    assert policy.rpo_minutes == 15 and policy.rto_minutes == 240
    assert policy.restore_test.on_every_backup is False and policy.restore_test.restore_jobs == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("schedules.daily_logical_backup", "at two", "schedules.daily_logical_backup must be a 5-field cron"),
        ("store.primary_url", "/var/backups", "store.primary_url must be s3://"),
        ("store.primary_url", _DELETE, "store.primary_url is missing"),
        ("encryption.mode", "rot13", "encryption.mode must be one of public_key | symmetric"),
        ("encryption.key_id", "ABC", "encryption.key_id must be the 40-hex-digit fingerprint"),
        ("retention.logical_days", 0, "retention.logical_days must be at least 1"),
        ("retention.logical_days", "thirty", "retention.logical_days must be a whole number"),
        ("logical_backup.data_only_tables", ["billing; DROP TABLE patients"], "unexpected ';' at character 8"),
        ("logical_backup.data_only_tables", ["Billing"], "capitals outside double quotes"),
        ("logical_backup.baseline_views", ['sales."Order Details'], "is not a table name as SQL writes it"),
        ("logical_backup.baseline_views", ["v_patient_summary", "v_patient_summary"], "lists a name twice"),
        ("compression.level", 42, "compression.level must be at most 19"),
        ("staging.dir", "relative/dir", "staging.dir must be an absolute path"),
        ("format_version", 2, "format_version 2 is not supported"),
        ("cluster.name", "Prod Cluster", "cluster.name must be lower-case"),
    ],
)
def test_a_bad_value_is_refused_with_a_line_naming_its_key(key: str, value: object, message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(with_value(key, value), source="test.yaml")
    assert message in str(caught.value)
    assert "\n" not in caught.value.message


def test_offsite_store_must_differ_from_primary() -> None:
    data = with_value("store.offsite_url", committed()["store"]["primary_url"])
    with pytest.raises(PolicyInvalid, match="offsite_url must differ"):
        parse_policy(data)


def test_symmetric_mode_needs_no_fingerprint() -> None:
    data = with_value("encryption.mode", "symmetric")
    data["encryption"]["key_id"] = "hms-backup-passphrase-2026"
    assert parse_policy(data).encryption.mode is EncryptionMode.SYMMETRIC


def test_malformed_yaml_gives_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("cluster: [unclosed\n")
    with pytest.raises(PolicyInvalid, match="is not valid YAML"):
        load_policy(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid, match=r"cannot read policy file .*nope\.yaml"):
        load_policy(tmp_path / "nope.yaml")


def test_the_restore_target_connection_is_read_from_the_policy_with_a_default() -> None:
    assert parse_policy(committed()).cluster.restore_target_connection_id == "hms_restore_target"
    assert (
        parse_policy(
            with_value("cluster.restore_target_connection_id", "dr_site_restore")
        ).cluster.restore_target_connection_id
        == "dr_site_restore"
    )
    data = committed()
    del data["cluster"]["restore_target_connection_id"]
    assert parse_policy(data).cluster.restore_target_connection_id == "hms_restore_target"
    with pytest.raises(PolicyInvalid, match=r"cluster\.restore_target_connection_id"):
        parse_policy(with_value("cluster.restore_target_connection_id", ""))
