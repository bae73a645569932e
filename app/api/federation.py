"""Node-to-node endpoints. Every request must carry an RFC 9421 signature by a current peer.

The signature is checked before anything else is read (takahe's inbox rule). Whatever is
wrong (malformed headers, unknown or removed peer, bad, stale, replayed or body-swapped) the
answer is the same 401 problem+json, so a stranger cannot probe which origins are our peers;
the real reason is logged (services/federation.py).
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest
from starlette.concurrency import run_in_threadpool

from app.api.deps import MetricsKey, NodeDep
from app.crypto.errors import WitnessConflict
from app.federation.pages import Notify
from app.services import sync, witness
from app.services.federation import Federation

router = APIRouter(tags=["federation"])

TLOG_SIZE = "text/x.tlog.size"


def get_federation(request: Request) -> Federation:
    fed: Federation = request.app.state.federation
    return fed


FederationDep = Annotated[Federation, Depends(get_federation)]


async def _peer(request: Request, fed: Federation) -> tuple[str, bytes]:
    """(authenticated peer origin, body)."""
    body = await request.body()
    url = fed.node.settings.public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    # The nonce cache and key lookup touch the database: run them off the event loop.
    peer = await run_in_threadpool(
        fed.authenticate, request.method, url, list(request.headers.items()), body
    )
    return peer, body


@router.get(
    "/federation/v1/records",
    operation_id="federation_records",
    summary="A page of the records the signing peer may see",
)
async def records(
    request: Request,
    fed: FederationDep,
    after: Annotated[int, Query(ge=0, description="A `next` from the previous page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = sync.DEFAULT_PAGE,
) -> Response:
    """Oldest first, with the `next` cursor (a position in this node's log) and the latest
    checkpoint. Signed request required (RFC 9421, keyid = the peer's origin)."""
    peer, _ = await _peer(request, fed)
    page = await run_in_threadpool(sync.build_page, fed.node, peer, after, limit)
    return Response(page.to_json(), media_type="application/json")


@router.post(
    "/federation/v1/notify",
    operation_id="federation_notify",
    status_code=202,
    summary="A peer's log grew: pull from it",
)
async def notify(request: Request, fed: FederationDep) -> Response:
    peer, body = await _peer(request, fed)
    message = Notify.from_json(body)
    await run_in_threadpool(fed.on_notify, peer, message)
    return Response(status_code=202)


@router.post(
    "/federation/v1/witness/add-checkpoint",
    operation_id="federation_add_checkpoint",
    summary="C2SP tlog-witness: cosign the signing peer's checkpoint",
    response_class=PlainTextResponse,
)
async def add_checkpoint(request: Request, fed: FederationDep) -> Response:
    """Body: `old <size>`, the consistency proof lines, a blank line, the checkpoint note.
    200: the cosignature line. 409 (`text/x.tlog.size`): the size we last cosigned."""
    peer, body = await _peer(request, fed)
    try:
        line = await run_in_threadpool(witness.add_checkpoint_request, fed.node, peer, body)
    except WitnessConflict as exc:
        return PlainTextResponse(f"{exc.known_size}\n", status_code=409, media_type=TLOG_SIZE)
    return PlainTextResponse(line)


@router.get(
    "/federation/v1/checkpoint",
    operation_id="federation_checkpoint",
    summary="Our latest checkpoint with the cosignatures we hold",
    response_class=PlainTextResponse,
)
def checkpoint(node: NodeDep) -> PlainTextResponse:
    """Public: a signed note anyone may verify with our verifier key and peers' keys."""
    return PlainTextResponse(witness.cosigned_checkpoint(node))


@router.get(
    "/metrics",
    operation_id="metrics",
    tags=["admin"],
    summary="Prometheus metrics (API key with scope metrics, or admin)",
    response_class=PlainTextResponse,
)
def metrics(fed: FederationDep, _: MetricsKey) -> Response:
    """HTTP and domain metrics added up over every worker (see app/observability.py)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from app.observability import MULTIPROC_ENV, render
    from app.services.federation import _StatusCollector

    if os.environ.get(MULTIPROC_ENV):
        # Workers' counters come from the shared directory; per-peer state from the database.
        body = render(fed.node, [_StatusCollector(fed.node)])
    else:
        body = render(fed.node) + generate_latest(fed.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
