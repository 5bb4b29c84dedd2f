"""The backup-status page: a FastAPI app in Airflow's API server plus an entry in the UI's navigation.

Plugin endpoints are not authenticated by Airflow: every route here depends on Airflow's own
``get_user`` and ``requires_access_dag("GET")``, which resolve the caller from a bearer token or
the UI's ``_token`` cookie (401 without one, 403 for a bad one or a user who may not read DAGs).
Every Airflow process loads plugins, so this module stays light: Airflow's API security module
(~0.8 s to import) and the engine are imported on the first request, not at plugin load.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

URL_PREFIX = "/hms-status"


async def require_dag_reader(request: Request) -> None:
    """Airflow's own check, as its REST API runs it: a user who may read DAGs, or 401/403."""
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if scheme and token.strip() else None
    )
    user = await get_user(request, None, bearer)
    requires_access_dag("GET")(request, user)


app = FastAPI(title="HMS backup status", dependencies=[Depends(require_dag_reader)])


def _collect() -> dict:
    from hms_dr.policy import load_policy
    from hms_dr.status import collect_status
    from hms_dr.tasks.connections import open_policy_store

    policy = load_policy()
    # An unreachable offsite store leaves its marks unknown (collect_status says why).
    primary, offsite = open_policy_store(policy), open_policy_store(policy, offsite=True)
    return collect_status(primary, offsite, policy.cluster.name, datetime.now(UTC))


@app.get("/", response_class=HTMLResponse)
def status_page() -> HTMLResponse:
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    from hms_dr.status import render_status_html

    # The UI may be served under a path ([api] base_url = https://host/airflow): links follow it.
    ui_root = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return HTMLResponse(render_status_html(_collect(), base_url=ui_root), headers={"Cache-Control": "no-store"})


@app.get("/status.json")
def status_json() -> JSONResponse:
    return JSONResponse(_collect(), headers={"Cache-Control": "no-store"})


class HmsStatusPlugin(AirflowPlugin):
    name = "hms_status"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": app, "url_prefix": URL_PREFIX, "name": "HMS backup status"}]
    external_views: ClassVar[list[dict[str, str]]] = [
        {"name": "Backup status", "href": f"{URL_PREFIX}/", "destination": "nav", "url_route": "hms-backup-status"}
    ]
