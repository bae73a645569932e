"""`GET /.well-known/signet`: the node's signed descriptor, what peers pin and check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app import __version__
from app.api.deps import NodeDep
from app.services import records, rekey

router = APIRouter(tags=["federation"])

PROTOCOL = "signet/1"


def descriptor(node: NodeDep, oprf: dict[str, Any] | None = None) -> dict[str, Any]:
    endpoints = {
        "records": "/federation/v1/records",
        "notify": "/federation/v1/notify",
        "witness": "/federation/v1/witness/add-checkpoint",
        "checkpoint": "/v1/log/checkpoint",
    }
    if oprf:
        endpoints["oprf_evaluate"] = "/federation/v1/oprf/evaluate"
    body: dict[str, Any] = {
        "kind": "node",
        "v": records.RECORD_VERSION,
        "protocol": PROTOCOL,
        "software": f"signet/{__version__}",
        "verifier_key": node.verifier_key,
        "url": node.settings.public_url,
        "endpoints": endpoints,
    }
    if oprf:  # identifier OPRF: the key epochs this node serves or holds a share of
        body["oprf"] = oprf
    # Our key rotations, oldest first: peers that pinned an older key follow the chain to this
    # descriptor's key by themselves (app/services/rekey.py).
    rotations = rekey.rotation_records(node)
    if rotations:
        body["rotations"] = rotations
    return records.sign(node, body)


@router.get("/.well-known/signet", operation_id="node_descriptor")
def node_descriptor(node: NodeDep, request: Request) -> dict[str, Any]:
    """Origin, verifier key, endpoints and protocol version, signed with the node key."""
    service = getattr(request.app.state, "oprf", None)
    return descriptor(node, service.public() if service is not None and service.enabled else None)
