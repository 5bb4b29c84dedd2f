"""A local sandbox for hms-dr: a PostgreSQL cluster (15, or 18 with HMS_DR_SANDBOX_PG=18) with WAL archiving and the HMS demo data,
a moto S3 server, a demo GPG key, and the Airflow settings and Connections that point at them.

Run it with ``PYTHONPATH=plugins:sandbox python -m hms_sandbox start|stop|status|env``, or from Python
with :func:`start_sandbox`, :func:`load_sandbox` and :func:`stop_sandbox`.
"""

from __future__ import annotations

from hms_sandbox.lifecycle import sandbox_status, start_sandbox, stop_sandbox
from hms_sandbox.state import Sandbox, SandboxPaths, SandboxSecrets, default_state_dir, load_sandbox

__all__ = [
    "Sandbox",
    "SandboxPaths",
    "SandboxSecrets",
    "default_state_dir",
    "load_sandbox",
    "sandbox_status",
    "start_sandbox",
    "stop_sandbox",
]
