"""Dependencies shared by the routers: the node, and API-key auth by scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool

from app.errors import SignetError
from app.services import apikeys, ratelimit
from app.services.apikeys import Caller
from app.services.node import Node

_bearer = HTTPBearer(auto_error=False, description="An API key from `signet api-keys create`.")


async def get_node(request: Request) -> Node:
    # Async so FastAPI does not hand this trivial lookup to a worker thread on every request.
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


async def _authorize(request: Request, key: str | None, scope: str) -> Caller:
    node: Node = request.app.state.node
    # Async with a cache in front: the hot path (a known key) needs neither a thread nor I/O.
    caller = apikeys.authenticate_nowait(node, key, scope)
    if caller is None:
        caller = await run_in_threadpool(apikeys.authenticate, node, key, scope)
    limiter = _take_leased(node, key, caller)
    if limiter is not None:
        await run_in_threadpool(limiter.take_shared, caller.id)
    return caller


def _take_leased(node: Node, key: str | None, caller: Caller) -> ratelimit.RateLimiter | None:
    """Per-key request limit, shared by the node's workers (app/services/ratelimit.py): most
    requests spend a token leased in memory, and a key over its limit is refused from memory
    (RateLimited). Returns the limiter when the shared bucket must be asked instead (no token
    spent), None when a token was spent or there is no limit."""
    limiter = ratelimit.for_db(node.db, node.settings.rate_limit)
    if limiter is None:
        return None
    assert key is not None  # authenticated
    limiter.note_key(apikeys.key_hash(key), caller.id)  # for app/api/overlimit.py
    return None if limiter.take_local(caller.id) else limiter


def authorize_nowait(node: Node, key: str | None, scope: str) -> Caller | None:
    """`_authorize` where it needs no thread and refuses nothing: the caller when its key is
    cached, holds `scope` and a leased token was spent; otherwise None, and no token spent
    (`_authorize` then decides, with the answer it would have given alone)."""
    try:
        caller = apikeys.authenticate_nowait(node, key, scope)
        if caller is None or _take_leased(node, key, caller) is not None:
            return None
    except SignetError:  # refused (unknown key, scope, over the limit): `_authorize` answers
        return None
    return caller


def require(scope: str) -> Callable[..., Awaitable[Caller]]:
    # The node comes from the request, not from `NodeDep`: every dependency FastAPI resolves
    # costs it a pass of its own bookkeeping on every request.
    async def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        return await _authorize(request, creds.credentials if creds else None, scope)

    check.__name__ = f"require_{scope}"
    return check


def require_hot(scope: str) -> Callable[..., Awaitable[Caller]]:
    """`require` for the hottest route (/v1/match): reads the bearer key itself rather than
    through `HTTPBearer`, one dependency fewer per request. The route declares the bearer
    scheme for the OpenAPI document itself (`BEARER_SECURITY`), since no `HTTPBearer`
    dependency is there to add it."""

    async def check(request: Request) -> Caller:
        return await _authorize(request, bearer_key(request), scope)

    check.__name__ = f"require_{scope}"
    return check


def bearer_key(request: Request) -> str | None:
    """The key of an `Authorization: Bearer <key>` header; None for anything else, exactly as
    `HTTPBearer(auto_error=False)` decides (tests/api/test_bearer_key.py)."""
    return bearer_key_of(request.headers.get("authorization"))


def bearer_key_of(authorization: str | None) -> str | None:
    """`bearer_key` of an Authorization header's value."""
    scheme, key = get_authorization_scheme_param(authorization)
    return key if scheme.lower() == "bearer" and key else None


BEARER_SECURITY: dict[str, Any] = {"security": [{_bearer.scheme_name: []}]}

SubmitKey = Annotated[Caller, Depends(require("submit"))]
MatchKey = Annotated[Caller, Depends(require_hot("match"))]
ReadKey = Annotated[Caller, Depends(require("read"))]
FeedbackKey = Annotated[Caller, Depends(require("feedback"))]
AdminKey = Annotated[Caller, Depends(require("admin"))]
AuditKey = Annotated[Caller, Depends(require("audit"))]
FeedKey = Annotated[Caller, Depends(require("feed"))]
# Prometheus scrapers: read-only figures, no admin powers (admin keys pass too).
MetricsKey = Annotated[Caller, Depends(require("metrics"))]
