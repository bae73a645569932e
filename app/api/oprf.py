"""Identifier OPRF endpoints (docs/identifiers.md).

- `POST /federation/v1/oprf/evaluate`: key holder side, signed requests from member nodes only.
- `POST /v1/identifiers/oprf/evaluate`: member side, for the node's API clients (an API key
  with the `submit` or `match` scope); forwards blinded elements to the key holders.
- `GET /v1/identifiers/oprf/epochs`: the public epochs, for clients without a local copy.

Over a limit: 429 problem+json with `Retry-After`. Not enough key holders with a verified
answer: 502 (or 429 when their limits were the cause), naming each refused holder.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from app.api import problems
from app.api.deps import NodeDep, _bearer
from app.api.federation import FederationDep, _peer
from app.errors import Forbidden, NotFound
from app.services import apikeys
from app.services.apikeys import Caller
from app.services.oprf import HoldersUnavailable, OprfService
from app.services.oprf_limits import RateLimited

router = APIRouter(tags=["identifiers"])


def get_oprf(request: Request) -> OprfService:
    service: OprfService = request.app.state.oprf
    return service


OprfDep = Annotated[OprfService, Depends(get_oprf)]


async def _hashing_caller(
    node: NodeDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """An API key that may submit or match: both need identifier hashes."""
    key = creds.credentials if creds else None
    try:
        return await run_in_threadpool(apikeys.authenticate, node, key, "match")
    except Forbidden:
        return await run_in_threadpool(apikeys.authenticate, node, key, "submit")


HashingKey = Annotated[Caller, Depends(_hashing_caller)]


def _limited(exc: RateLimited, request: Request) -> JSONResponse:
    return problems.problem(
        429,
        "Too many requests",
        str(exc),
        type_=problems.TYPE_BASE + "rate-limited",
        instance=request.url.path,
        headers={"Retry-After": str(exc.retry_after)},
    )


@router.post(
    "/federation/v1/oprf/evaluate",
    operation_id="federation_oprf_evaluate",
    tags=["federation"],
    summary="Key holder: partial OPRF evaluations of a member node's blinded elements",
)
async def holder_evaluate(request: Request, fed: FederationDep, service: OprfDep) -> Response:
    """Signed request from a pinned member node. Body `{"epoch", "blinded": [base64, ...]}`
    (at most 1,000); answer `{"epoch", "holder", "evaluated": [...], "proof"}`: this holder's
    share times each element and one RFC 9497 DLEQ proof against its public share. Counted in
    this holder's log (`oprf_tally`) and against the member's per-minute budget."""
    peer, body = await _peer(request, fed)
    if not service.shares:
        raise NotFound("this node holds no OPRF key share")
    try:
        result = await run_in_threadpool(service.holder_evaluate, peer, body)
    except RateLimited as exc:
        return _limited(exc, request)
    return JSONResponse(result)


@router.post(
    "/v1/identifiers/oprf/evaluate",
    operation_id="identifiers_oprf_evaluate",
    summary="Evaluate blinded identifiers through the key holders (threshold OPRF)",
)
async def member_evaluate(
    request: Request,
    caller: HashingKey,
    service: OprfDep,
    body: Annotated[
        dict[str, Any],
        Body(
            examples=[{"epoch": "fed-2026", "blinded": ["<base64 ristretto255 element>"]}],
            description="`blinded`: up to 1,000 base64 elements; `epoch`: default current.",
        ),
    ],
) -> Response:
    """The node forwards the elements to `threshold` key holders over the signed federation
    channel, verifies each holder's proof, and returns the verified partials for the client to
    verify again, combine and unblind. It never sees an identifier or an OPRF output.
    Malformed elements are refused per item (`refused`); `accepted` lists the indexes served."""
    try:
        result = await run_in_threadpool(service.member_evaluate, str(caller.id), body)
    except RateLimited as exc:
        return _limited(exc, request)
    except HoldersUnavailable as exc:
        return problems.problem(
            exc.status,
            "Key holders unavailable" if exc.status != 429 else "Too many requests",
            str(exc),
            type_=problems.TYPE_BASE + "oprf-holders",
            instance=request.url.path,
            holders=exc.refused,
        )
    return JSONResponse(result)


@router.get(
    "/v1/identifiers/oprf/epochs",
    operation_id="identifiers_oprf_epochs",
    summary="The OPRF key epochs this node serves (public shares, threshold, public key)",
)
def epochs(service: OprfDep) -> dict[str, Any]:
    return service.public()
