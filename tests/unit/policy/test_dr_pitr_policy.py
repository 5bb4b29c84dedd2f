"""The policy's dr section (hms_dr_pitr's data roots and ports, the integrity check's settings),
and hms_dr_pitr's trigger form: every bad value is refused before a run exists (the API answers
HTTP 400 with the same validation)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DEFAULT_POLICY_PATH, DrPolicy, load_policy, parse_policy

REPO_ROOT = Path(__file__).resolve().parents[3]


def with_dr(section: Any) -> dict[str, Any]:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    if section is None:
        data.pop("dr", None)
    else:
        data["dr"] = section
    return data


def test_committed_policy_allows_pitr_only_below_the_compose_volume_and_checks_every_row() -> None:
    dr = load_policy(DEFAULT_POLICY_PATH).dr
    assert dr is not None
    assert dr.allowed_data_roots == (Path("/var/lib/hms-dr/pitr"),) and dr.pitr_port_range == (5433, 5532)
    assert dr.integrity.heapallindexed and dr.integrity.jobs == 1 and dr.integrity.lock_timeout_s == 60


def test_without_a_dr_section_no_data_directory_is_allowed() -> None:
    assert parse_policy(with_dr(None)).dr == DrPolicy()
    assert DrPolicy().allowed_data_roots == ()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"allowed_data_roots": "/srv/pitr"}, "dr.allowed_data_roots must be a list"),
        ({"allowed_data_roots": ["srv/pitr"]}, "dr.allowed_data_roots holds 'srv/pitr'"),
        ({"allowed_data_roots": ["/"]}, "dr.allowed_data_roots holds '/'"),
        ({"allowed_data_roots": ["/srv/../var/lib/postgresql"]}, "without '..'"),
        ({"pitr_port_range": [5432]}, "dr.pitr_port_range must be [first, last]"),
        ({"pitr_port_range": [6000, 5000]}, "dr.pitr_port_range must be [first, last]"),
        ({"pitr_port_range": [80, 90]}, "dr.pitr_port_range must be [first, last]"),
        ({"retries": -1}, "dr.retries must be at least 0"),
        ({"integrity": {"jobs": 0}}, "dr.integrity.jobs must be at least 1"),
        ({"integrity": {"heapallindexed": "yes"}}, "dr.integrity.heapallindexed must be true or false"),
        ({"integrity": []}, "dr.integrity must be a mapping"),
        ("on", "dr must be a mapping"),
    ],
)
def test_a_bad_dr_value_names_its_key(section: Any, message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(with_dr(section))
    assert message in caught.value.message


PROBE = """
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.param import ParamValidationError
params = DagBag(dag_folder=%r).dags["hms_dr_pitr"].params
results = {}
for name, value in json.loads(%r):
    try:
        params.get_param(name).resolve(value) if value != "<missing>" else params.get_param(name).resolve()
        results[f"{name}={value}"] = "accepted"
    except ParamValidationError as exc:
        results[f"{name}={value}"] = str(exc).splitlines()[0]
print(json.dumps(results))
"""

BAD = [
    ("reason", "<missing>"),
    ("reason", ""),
    ("target_type", "yesterday"),
    ("data_directory", "<missing>"),
    ("data_directory", "relative/data"),
    ("data_directory", "/" + "x" * 90),
    ("port", 5432),
    ("port", 70000),
    ("base_backup_id", "last-sunday"),
    ("promote", "yes"),
    ("target", "t" * 101),
]
GOOD = [
    ("reason", "rows deleted by mistake"),
    ("target_type", "time"),
    ("data_directory", "/var/lib/hms-dr/pitr/i42/data"),
    ("port", 5433),
    ("port", None),
    ("base_backup_id", None),
    ("base_backup_id", "20261122T030000Z"),
    ("target", None),
]


def test_the_trigger_form_refuses_each_bad_value_and_takes_the_good_ones(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "plugins"),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    env.pop("HMS_DR_POLICY", None)
    probe = PROBE % (str(REPO_ROOT / "dags" / "hms_dr_pitr.py"), json.dumps(BAD + GOOD))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, value in BAD:
        assert results[f"{name}={value}"] != "accepted", (name, value)
    for name, value in GOOD:
        assert results[f"{name}={value}"] == "accepted", (name, value, results[f"{name}={value}"])
