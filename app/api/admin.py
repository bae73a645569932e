"""Operator endpoints: API keys (peers come with federation)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AdminKey, NodeDep
from app.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from app.services import apikeys

router = APIRouter(prefix="/v1/admin", tags=["admin"])


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
