"""Operator endpoints: API keys, peers, leases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from app.api.deps import AdminKey, NodeDep
from app.api.federation import FederationDep
from app.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from app.services import apikeys, peers, roster
from app.services.peers import PeerIn, PeerOut, PeerPolicyIn

router = APIRouter(prefix="/v1/admin", tags=["admin"])

PeerOrigin = Annotated[str, Path(max_length=253, description="The peer's origin.")]


class SyncResultOut(BaseModel):
    peer: str
    pages: int
    applied: int
    duplicate: int
    refused: int
    cursor: int
    error: str | None


@router.post("/api-keys", operation_id="create_api_key", response_model=ApiKeyCreated)
def create_api_key(body: ApiKeyIn, node: NodeDep, _: AdminKey) -> ApiKeyCreated:
    """Create a key; the response is the only time the key itself is shown."""
    return apikeys.create(node, body.name, list(body.scopes), body.member)


@router.get("/api-keys", operation_id="list_api_keys", response_model=list[ApiKeyOut])
def list_api_keys(node: NodeDep, _: AdminKey) -> list[ApiKeyOut]:
    return apikeys.list_keys(node)


@router.post("/api-keys/{key_id}/revoke", operation_id="revoke_api_key", response_model=ApiKeyOut)
def revoke_api_key(key_id: int, node: NodeDep, _: AdminKey) -> ApiKeyOut:
    return apikeys.revoke(node, key_id)


# --- leases ----------------------------------------------------------------------------------


class LeaseOut(BaseModel):
    name: str
    holder: str
    expires_at: datetime | None
    generation: int
    live: bool
    this_process: bool


@router.get("/leases", operation_id="list_leases", response_model=list[LeaseOut])
def list_leases(fed: FederationDep, _: AdminKey) -> list[LeaseOut]:
    """Which process holds each lease: `pull` names the one process (of every worker of every
    host) that runs the pull loops. `holder` is host:pid:random; `live` is false once the
    holder stopped renewing (released, or dead and not yet replaced); `this_process` says
    whether the worker answering is the holder."""
    from app.services.lease import all_leases

    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    mine = fed.lease.me if fed.lease.held else None
    return [
        LeaseOut(
            name=lease.name,
            holder=lease.holder,
            expires_at=(
                datetime.fromtimestamp(lease.expires_ms / 1000, UTC) if lease.expires_ms else None
            ),
            generation=lease.generation,
            live=lease.expires_ms > now_ms,
            this_process=lease.name == fed.lease.name and lease.holder == mine,
        )
        for lease in all_leases(fed.node.db)
    ]


# --- peers -----------------------------------------------------------------------------------


@router.post("/peers", operation_id="add_peer", response_model=PeerOut, status_code=201)
def add_peer(body: PeerIn, fed: FederationDep, _: AdminKey) -> PeerOut:
    """Pin a peer: its descriptor at `url` must be signed by `verifier_key` and name it."""
    return peers.add(fed.node, body, fed.client.descriptor)


@router.get("/peers", operation_id="list_peers", response_model=list[PeerOut])
def list_peers(
    node: NodeDep,
    _: AdminKey,
    removed: Annotated[bool, Query(description="Include removed peers.")] = False,
) -> list[PeerOut]:
    """Peers with their sync status: cursor, lag, last success, last error, roster status."""
    return [_with_roster(node, p) for p in peers.list_all(node, removed=removed)]


@router.get("/peers/{origin}", operation_id="get_peer", response_model=PeerOut)
def get_peer(origin: PeerOrigin, node: NodeDep, _: AdminKey) -> PeerOut:
    return _with_roster(node, peers.get(node, origin))


def _with_roster(node: NodeDep, peer: PeerOut) -> PeerOut:
    return peer.model_copy(update={"roster_status": roster.member_status(node, peer.origin)})


@router.put("/peers/{origin}/policy", operation_id="set_peer_policy", response_model=PeerOut)
def set_peer_policy(origin: PeerOrigin, body: PeerPolicyIn, node: NodeDep, _: AdminKey) -> PeerOut:
    """What we share with the peer: `categories=a,b;types=pdq,md5;tlp=green,amber`."""
    return peers.set_policy(node, origin, body.policy)


@router.delete("/peers/{origin}", operation_id="remove_peer", response_model=PeerOut)
def remove_peer(origin: PeerOrigin, node: NodeDep, _: AdminKey) -> PeerOut:
    """Stop federating: its requests are refused from now on, nothing more is sent to it."""
    return peers.remove(node, origin)


@router.post("/peers/{origin}/sync", operation_id="sync_peer", response_model=SyncResultOut)
def sync_peer(origin: PeerOrigin, fed: FederationDep, _: AdminKey) -> SyncResultOut:
    """Pull from the peer now."""
    peers.get(fed.node, origin)
    r = fed.pull(origin)
    return SyncResultOut(**r.__dict__)
