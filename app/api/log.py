"""The auditor API (scope `audit`): checkpoints, entries and Merkle proofs of the exchange log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from app.api.deps import AdminKey, AuditKey, NodeDep
from app.crypto._encoding import b64encode
from app.services import log as exchange_log

router = APIRouter(prefix="/v1/log", tags=["log"])

NOTE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": "A C2SP tlog-checkpoint note."}
}


class EntryOut(BaseModel):
    index: int
    entry: dict[str, Any] = Field(description="The JSON whose RFC 8785 bytes are the leaf data.")
    leaf_hash: str = Field(description="Base64 leaf hash the node stored (recompute, don't trust).")


class InclusionProofOut(BaseModel):
    index: int
    size: int
    leaf_hash: str
    hashes: list[str] = Field(description="Base64 RFC 9162 inclusion proof, leaf side first.")


class ConsistencyProofOut(BaseModel):
    from_size: int = Field(alias="from")
    to: int
    hashes: list[str] = Field(description="Base64 RFC 9162 consistency proof.")

    model_config = {"populate_by_name": True}


class SignalEntryOut(EntryOut):
    inclusion_proof: list[str]


class SignalEntriesOut(BaseModel):
    signal: str
    size: int = Field(description="Size of the checkpoint the proofs are against.")
    checkpoint: str
    entries: list[SignalEntryOut]


# Ranges are checked in the service, not by Query(ge=...), so a bad range is a 400 naming the
# field and the log size, rather than a bare 422 schema error.


def _b64(hashes: list[bytes]) -> list[str]:
    return [b64encode(h) for h in hashes]


@router.get(
    "/checkpoint",
    operation_id="log_checkpoint",
    response_class=PlainTextResponse,
    responses=NOTE,
)
def get_checkpoint(
    node: NodeDep,
    _: AuditKey,
    size: Annotated[int | None, Query(description="An older checkpoint, if kept.")] = None,
) -> PlainTextResponse:
    """The latest signed checkpoint (or the one published at `size`)."""
    return PlainTextResponse(exchange_log.checkpoint_note(node, size))


@router.post(
    "/checkpoint",
    operation_id="publish_checkpoint",
    response_class=PlainTextResponse,
    responses=NOTE,
)
def post_checkpoint(node: NodeDep, _: AdminKey) -> PlainTextResponse:
    """Publish a checkpoint of the log as it is now (operators; the cadence does it anyway)."""
    return PlainTextResponse(exchange_log.publish_checkpoint(node).note)


@router.get("/entries", operation_id="log_entries", response_model=list[EntryOut])
def get_entries(
    node: NodeDep,
    _: AuditKey,
    start: int,
    end: Annotated[int, Query(description="Exclusive.")],
) -> list[EntryOut]:
    """Entries `[start, end)`; at most 1000 per page, fewer at the end of the log."""
    return [
        EntryOut(index=e.index, entry=e.entry, leaf_hash=b64encode(e.leaf_hash))
        for e in exchange_log.entries_page(node, start, end)
    ]


@router.get(
    "/proof/inclusion", operation_id="log_inclusion_proof", response_model=InclusionProofOut
)
def get_inclusion_proof(
    node: NodeDep,
    _: AuditKey,
    index: int,
    size: int,
) -> InclusionProofOut:
    leaf, proof = exchange_log.inclusion_proof(node, index, size)
    return InclusionProofOut(index=index, size=size, leaf_hash=b64encode(leaf), hashes=_b64(proof))


@router.get(
    "/proof/consistency",
    operation_id="log_consistency_proof",
    response_model=ConsistencyProofOut,
    response_model_by_alias=True,
)
def get_consistency_proof(
    node: NodeDep,
    _: AuditKey,
    from_: Annotated[int, Query(alias="from")],
    to: int,
) -> ConsistencyProofOut:
    proof = exchange_log.consistency_proof(node, from_, to)
    return ConsistencyProofOut(from_size=from_, to=to, hashes=_b64(proof))


@router.get("/signals/{signal_id}", operation_id="log_signal", response_model=SignalEntriesOut)
def get_signal_entries(node: NodeDep, _: AuditKey, signal_id: str) -> SignalEntriesOut:
    """The signal's publication and retraction entries, proven against `checkpoint`."""
    found = exchange_log.signal_entries(node, signal_id)
    return SignalEntriesOut(
        signal=signal_id,
        size=found.size,
        checkpoint=found.checkpoint,
        entries=[
            SignalEntryOut(
                index=e.index,
                entry=e.entry,
                leaf_hash=b64encode(e.leaf_hash),
                inclusion_proof=_b64(proof),
            )
            for e, proof in found.entries
        ],
    )
