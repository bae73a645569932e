"""TAXII 2.1 (read-only): discovery, one API root, a collection per category, paged objects.

Clients authenticate with HTTP Basic (any user name, the Signet API key as the password: what the
OASIS `taxii2-client` sends for user/password) or with `Authorization: Bearer <key>`; the key
needs the `feed` scope. Every answer is `application/taxii+json;version=2.1`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from app.api.deps import NodeDep
from app.errors import NotFound, Unauthenticated
from app.services import apikeys, feeds
from app.services.apikeys import Caller

TAXII_MEDIA = "application/taxii+json;version=2.1"
TAXII_BASE = "/taxii2"
API_ROOT = "signet"

router = APIRouter(prefix=TAXII_BASE, tags=["taxii"])


class TaxiiResponse(JSONResponse):
    media_type = TAXII_MEDIA


def taxii_key(
    node: NodeDep, authorization: Annotated[str | None, Header(max_length=1024)] = None
) -> Caller:
    scheme, _, value = (authorization or "").partition(" ")
    key: str | None = None
    if scheme.lower() == "bearer":
        key = value.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("malformed Basic credentials") from None
        key = decoded.partition(":")[2]
    if not key:
        raise Unauthenticated("send the API key as the Basic password or as a Bearer token")
    return apikeys.authenticate(node, key, "feed")


TaxiiKey = Annotated[Caller, Depends(taxii_key)]
CollectionId = Annotated[str, Path(max_length=64)]


def _root_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + f"{TAXII_BASE}/{API_ROOT}/"


@router.get("/", operation_id="taxii_discovery", response_class=TaxiiResponse)
def discovery(request: Request, node: NodeDep, _: TaxiiKey) -> TaxiiResponse:
    """TAXII server discovery: one API root."""
    root = _root_url(request)
    return TaxiiResponse(
        {
            "title": f"Signet node {node.origin}",
            "description": "Signals as STIX 2.1 indicators (read-only)",
            "default": root,
            "api_roots": [root],
        }
    )


@router.get(f"/{API_ROOT}/", operation_id="taxii_api_root", response_class=TaxiiResponse)
def api_root(node: NodeDep, _: TaxiiKey) -> TaxiiResponse:
    return TaxiiResponse(
        {
            "title": f"{node.origin} signals",
            "versions": [TAXII_MEDIA],
            "max_content_length": 0,  # read-only: nothing may be posted
        }
    )


@router.get(
    f"/{API_ROOT}/collections/", operation_id="taxii_collections", response_class=TaxiiResponse
)
def list_collections(node: NodeDep, _: TaxiiKey) -> TaxiiResponse:
    return TaxiiResponse({"collections": feeds.collections(node)})


def _collection(node: Any, cid: str) -> str:
    name = feeds.collection_by_id(node, cid)
    if name is None:
        raise NotFound(f"no collection {cid!r}")
    return name


@router.get(
    f"/{API_ROOT}/collections/{{collection_id}}/",
    operation_id="taxii_collection",
    response_class=TaxiiResponse,
)
def get_collection(collection_id: CollectionId, node: NodeDep, _: TaxiiKey) -> TaxiiResponse:
    _collection(node, collection_id)
    for c in feeds.collections(node):
        if c["id"] == collection_id:
            return TaxiiResponse(c)
    raise NotFound(f"no collection {collection_id!r}")


@router.get(
    f"/{API_ROOT}/collections/{{collection_id}}/objects/",
    operation_id="taxii_objects",
    response_class=TaxiiResponse,
)
def get_objects(
    collection_id: CollectionId,
    node: NodeDep,
    key: TaxiiKey,
    added_after: Annotated[str | None, Query(max_length=40)] = None,
    next_: Annotated[str | None, Query(alias="next", max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    match_type: Annotated[str | None, Query(alias="match[type]", max_length=256)] = None,
) -> TaxiiResponse:
    """Indicators in the order they were added (changed); follow `next` while `more` is true."""
    name = _collection(node, collection_id)
    types = [t.strip() for t in match_type.split(",")] if match_type else None
    envelope, first, last = feeds.taxii_objects(
        node, key, name, added_after=added_after, next_token=next_, limit=limit, types=types
    )
    headers = {}
    if first and last:
        headers = {"X-TAXII-Date-Added-First": first, "X-TAXII-Date-Added-Last": last}
    return TaxiiResponse(envelope, headers=headers)
