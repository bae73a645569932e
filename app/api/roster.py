"""The federation roster over HTTP: the accepted versions (public, as a descriptor is) and this
node's view of it (admin)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import AdminKey, NodeDep
from app.errors import NotFound
from app.services import roster

router = APIRouter(tags=["federation"])


@router.get("/v1/roster", operation_id="get_roster", summary="The federation roster")
def get_roster(
    node: NodeDep,
    version: Annotated[int | None, Query(ge=1, le=2**53, description="A past version")] = None,
) -> dict[str, Any]:
    """The latest roster version this node accepted (or `version`), exactly as the stewards
    signed it: peers compare it with theirs, and a node catching up fetches each version."""
    with node.db.read() as session:
        row = roster.version_in(session, version) if version else roster.current_in(session)
    if row is None:
        raise NotFound("this node follows no roster" if version is None else "no such version")
    return dict(row.document)


@router.get(
    "/v1/admin/roster", operation_id="roster_status", tags=["admin"], summary="Roster status"
)
def roster_status(node: NodeDep, _: AdminKey) -> dict[str, Any]:
    """Version, members and their status, what each peer holds, last error, equivocations."""
    out = dataclasses.asdict(roster.status(node))
    json.dumps(out)  # plain JSON only
    return out
