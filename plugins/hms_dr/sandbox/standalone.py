"""`make airflow`: serve the sandbox in the Airflow UI with `airflow standalone`.

Picks port 8080 (or a free one), gives the UI a known admin login whose password is generated
once and kept in the sandbox (mode 0600), prints the URL and the login, then hands the terminal
to `airflow standalone` (scheduler, dag-processor, api-server, triggerer). Ctrl-C stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from hms_dr.sandbox.cluster import port_is_open
from hms_dr.sandbox.policy_file import SANDBOX_APPROVER
from hms_dr.sandbox.state import load_sandbox

ADMIN_USER = "admin"
PREFERRED_PORT = 8080


def ui_password(state_dir: Path) -> tuple[Path, str]:
    """The passwords file of Airflow's simple auth manager, created once with a random password."""
    path = state_dir / "ui-passwords.json"
    if path.exists():
        return path, json.loads(path.read_text())[ADMIN_USER]
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({ADMIN_USER: password}, out)
    return path, password


def choose_port() -> int:
    from hms_dr.sandbox.cluster import free_port

    return PREFERRED_PORT if not port_is_open(PREFERRED_PORT) else free_port()


def main() -> int:
    sandbox = load_sandbox()
    passwords_file, password = ui_password(sandbox.state_dir)
    port = choose_port()
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,{SANDBOX_APPROVER}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
    }
    sys.stdout.write(
        f"Airflow UI: http://localhost:{port}  login: {ADMIN_USER} / {password}\n"
        f"(DR swap approvals, four eyes: login {SANDBOX_APPROVER}, password in {passwords_file} once Airflow is up)\n"
        f"(sandbox: PostgreSQL 127.0.0.1:{sandbox.pg_port}, S3 {sandbox.s3_endpoint_url}; DAGs start paused)\n"
    )
    sys.stdout.flush()
    airflow = str(Path(sys.executable).with_name("airflow"))
    os.execve(airflow, [airflow, "standalone"], env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
