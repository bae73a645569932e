"""Signals, matching and feedback: the API platforms call."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, status
from starlette.concurrency import run_in_threadpool

from app import observability
from app.api.deps import BEARER_SECURITY, FeedbackKey, MatchKey, NodeDep, ReadKey, SubmitKey
from app.api.fairness import MatchCoalescer, MatchGate
from app.schemas import (
    BatchResult,
    FeedbackIn,
    FeedbackOut,
    MatchBatchIn,
    MatchBatchResult,
    RetractIn,
    SignalBatchIn,
    SignalOut,
    SignalPage,
)
from app.services import feedback, matching, signals
from app.services.node import Node

router = APIRouter(prefix="/v1", tags=["signals"])

SignalId = Annotated[str, Path(max_length=64, description="Signal id.")]


@router.post(
    "/signals",
    operation_id="submit_signals",
    response_model=BatchResult,
    status_code=status.HTTP_200_OK,
    summary="Publish a batch of signals",
)
def submit_signals(body: SignalBatchIn, node: NodeDep, key: SubmitKey) -> BatchResult:
    """Each item is answered on its own (`created`, `duplicate` or `rejected` with the field and
    reason); a bad item never stops the others. Resubmitting a signal returns its id again."""
    result = signals.submit_batch(node, body.signals, key.id)
    observability.count_submissions(body.signals, result)
    return result


@router.get("/signals", operation_id="list_signals", response_model=SignalPage)
def list_signals(
    node: NodeDep,
    _: ReadKey,
    type: Annotated[str | None, Query(max_length=32)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["active", "retracted", "expired"] | None = None,
    origin: Annotated[str | None, Query(max_length=253)] = None,
    after: Annotated[
        str | None, Query(max_length=32, description="`next` of the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SignalPage:
    """Signals in a stable order; follow `next` until it is null."""
    return signals.list_page(
        node, type_=type, category=category, status=status, origin=origin, after=after, limit=limit
    )


@router.get("/signals/{signal_id}", operation_id="get_signal", response_model=SignalOut)
def get_signal(
    signal_id: SignalId,
    node: NodeDep,
    _: ReadKey,
    origin: Annotated[str | None, Query(max_length=253)] = None,
) -> SignalOut:
    """One signal, with its signed record as published and its feedback counts."""
    return signals.get(node, signal_id, origin)


@router.post(
    "/signals/{signal_id}/retract", operation_id="retract_signal", response_model=SignalOut
)
def retract_signal(signal_id: SignalId, body: RetractIn, node: NodeDep, _: SubmitKey) -> SignalOut:
    """Withdraw one of this node's signals; it stops matching at once, here and at peers."""
    return signals.retract(node, signal_id, body.reason)


@router.post(
    "/match",
    operation_id="match",
    response_model=MatchBatchResult,
    tags=["match"],
    openapi_extra=BEARER_SECURITY,
)
async def match(body: MatchBatchIn, key: MatchKey, request: Request) -> MatchBatchResult:
    """Match a batch of values against every active signal this node holds.

    `pdq` by Hamming distance (default threshold 31, at most SIGNET_MAX_PDQ_THRESHOLD),
    `text_tlsh` by TLSH distance, `text` finds keyword and TLSH hits in a message (never
    stored), every other type exactly. At most SIGNET_MAX_MATCHES_PER_QUERY matches per query,
    closest first; `truncated` says more were found."""
    # The node from the request rather than `NodeDep`: one dependency fewer for FastAPI to
    # resolve on the busiest route.
    node: Node = request.app.state.node
    result: MatchBatchResult
    if plain_match(node, body.queries):
        # A few plain PDQ codes or md5s: searched with this key's other requests (fairness.py).
        # Most of these never get here: app/api/fastmatch.py answers them ahead of the router.
        result = await match_plain(request.app, node, key.id, body.queries)
    else:
        gate = match_coalescer(request.app).gate
        result = await gate.run(key.id, matching.match_batch, node, body.queries)
    observability.count_matches(body.queries, result)
    seen = [
        (m.id, m.origin)
        for q, r in zip(body.queries, result.results, strict=True)
        if isinstance(q, dict) and q.get("report_seen") is True
        for m in r.matches
    ]
    if seen:
        await run_in_threadpool(feedback.report_seen, node, seen, key.id)
    return result


def match_coalescer(app: Any) -> MatchCoalescer:
    """The worker's coalescer and, as its `gate`, the gate all match work runs through: in
    worker threads, a few per key, so a heavy batch never stalls the event loop and one key's
    flood queues behind itself (app/api/fairness.py)."""
    coalescer: MatchCoalescer | None = getattr(app.state, "match_coalescer", None)
    if coalescer is None:
        coalescer = app.state.match_coalescer = MatchCoalescer(MatchGate())
    return coalescer


def plain_match(node: Node, queries: list[Any]) -> bool:
    """True for a request the coalescer may take: a few plain PDQ codes or md5s that cannot be
    refused as a whole under this node's limits."""
    settings = node.settings
    return MatchCoalescer.eligible(
        queries,
        min(matching.DEFAULT_PDQ_THRESHOLD, settings.max_pdq_threshold),
        settings.max_batch,
    )


async def match_plain(app: Any, node: Node, key_id: int, queries: list[Any]) -> MatchBatchResult:
    """Match a `plain_match` request together with this key's other plain requests."""
    result: MatchBatchResult = await match_coalescer(app).run(
        key_id, partial(matching.match_batch, node), queries, node.settings.max_batch
    )
    return result


@router.post(
    "/feedback", operation_id="give_feedback", response_model=FeedbackOut, tags=["feedback"]
)
def give_feedback(body: FeedbackIn, node: NodeDep, key: FeedbackKey) -> FeedbackOut:
    """Record a verdict on a signal; it is signed and flows back to the signal's origin."""
    return feedback.give(node, body, key.id)
