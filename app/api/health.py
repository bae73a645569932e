"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import NodeDep
from app.schemas import Health
from app.storage import migrate

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready"}},
)
def readyz(node: NodeDep) -> Health | JSONResponse:
    """The database answers and its schema is at the latest migration."""
    checks: dict[str, str] = {}
    try:
        node.db.ping()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if migrate.is_current(node.db) else "behind: run migrations"
    except Exception as exc:  # readiness must answer, whatever the database does
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["match_index"] = f"{len(node.index)} signals"
    ok = all(v == "ok" for k, v in checks.items() if k != "match_index")
    health = Health(status="ok" if ok else "unavailable", checks=checks)
    if ok:
        return health
    return JSONResponse(health.model_dump(), status_code=503)
