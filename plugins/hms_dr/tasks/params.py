"""The params of the running DAG run, once its conf has named only params the DAG declares.

Every DAG with params calls ``run_params`` first in its first task, before it reads or touches
anything: Airflow 3.3 lets an unknown conf key through at trigger time (see ``hms_dr.params``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hms_dr.params import refuse_unknown_params


def run_params(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context["params"]`` as a dict; RequestRefused when the run's conf holds a key that no
    param of its DAG declares. The conf is checked, not the merged params, because the conf is
    exactly what the operator sent."""
    dag = context["dag"]
    conf = getattr(context["dag_run"], "conf", None) or {}
    refuse_unknown_params(conf, dag.params.keys(), dag_id=dag.dag_id)
    return dict(context["params"])
