"""Dependencies shared by the routers: the node, and API-key auth by scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.services import apikeys
from app.services.node import Node
from app.storage.models import ApiKeyRow

_bearer = HTTPBearer(auto_error=False, description="An API key from `signet api-keys create`.")


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def require(scope: str) -> Callable[..., ApiKeyRow]:
    def check(
        node: NodeDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKeyRow:
        return apikeys.authenticate(node, creds.credentials if creds else None, scope)

    check.__name__ = f"require_{scope}"
    return check


SubmitKey = Annotated[ApiKeyRow, Depends(require("submit"))]
MatchKey = Annotated[ApiKeyRow, Depends(require("match"))]
ReadKey = Annotated[ApiKeyRow, Depends(require("read"))]
FeedbackKey = Annotated[ApiKeyRow, Depends(require("feedback"))]
AdminKey = Annotated[ApiKeyRow, Depends(require("admin"))]
AuditKey = Annotated[ApiKeyRow, Depends(require("audit"))]
FeedKey = Annotated[ApiKeyRow, Depends(require("feed"))]
