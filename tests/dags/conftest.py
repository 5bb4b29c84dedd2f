"""DAG tests parse the real dags/ folder with a throw-away Airflow home (no metadata DB needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Before anything imports airflow: its configuration is read once, at first import.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hms-dr-airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
os.environ.pop("HMS_DR_POLICY", None)  # the committed policy is the one that must parse
