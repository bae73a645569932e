"""Consumer feeds: a StopNCII-compatible FetchHashes and the signed changes feed.

The StopNCII route answers the unmodified python-threatexchange client (and HMA), which sends the
credential in `x-functions-key` and `Ocp-Apim-Subscription-Key`; here both carry one Signet API
key with the `feed` scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import FeedKey, NodeDep
from app.errors import Unauthenticated
from app.services import apikeys, feeds
from app.services.apikeys import Caller

STOPNCII_BASE = "/stopncii/v1"

router = APIRouter(tags=["feeds"])
_bearer = HTTPBearer(auto_error=False)


def stopncii_key(
    node: NodeDep,
    x_functions_key: Annotated[str | None, Header(max_length=256)] = None,
    ocp_apim_subscription_key: Annotated[str | None, Header(max_length=256)] = None,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Caller:
    key = x_functions_key or ocp_apim_subscription_key or (creds.credentials if creds else None)
    if (
        x_functions_key
        and ocp_apim_subscription_key
        and x_functions_key != ocp_apim_subscription_key
    ):
        # Two different secrets would leave it unclear which one grants access: refuse both.
        raise Unauthenticated(
            "x-functions-key and Ocp-Apim-Subscription-Key must carry the same Signet API key"
        )
    if not key:
        raise Unauthenticated("missing API key: send it in x-functions-key")
    return apikeys.authenticate(node, key, "feed")


StopNCIIKey = Annotated[Caller, Depends(stopncii_key)]


@router.get(
    f"{STOPNCII_BASE}/FetchHashes",
    operation_id="stopncii_fetch_hashes",
    summary="StopNCII-compatible hash feed",
)
def fetch_hashes(
    node: NodeDep,
    key: StopNCIIKey,
    start_timestamp: Annotated[int, Query(alias="startTimestamp", ge=0, le=253_402_300_799)] = 0,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=10_000)] = 800,
    next_page_token: Annotated[str | None, Query(alias="nextPageToken", max_length=64)] = None,
) -> dict[str, Any]:
    """`clear` records (and `green` ones for member keys) of the four types a StopNCII consumer
    knows (pdq, md5, domain, keyword), oldest change first. Resume with `nextSetTimestamp`;
    within one walk follow `nextPageToken` until `hasMoreRecords` is false."""
    return feeds.stopncii_fetch(node, key, start_timestamp, page_size, next_page_token)


@router.get("/v1/changes", operation_id="list_changes", summary="Signed records in log order")
def list_changes(
    node: NodeDep,
    key: FeedKey,
    after: Annotated[int, Query(ge=-1, le=2**62, description="`next` of the last page")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """Each item is the origin's signed signal record, or its signed retraction once withdrawn,
    with the log position (`seq`) of that change; follow `next` while `more` is true."""
    return feeds.changes(node, key, after, limit)


@router.get(
    "/v1/changes/expired", operation_id="list_expired", summary="Signals whose validity ended"
)
def list_expired(
    node: NodeDep,
    key: FeedKey,
    since: Annotated[str, Query(max_length=40, description="RFC 3339, exclusive")],
    until: Annotated[str | None, Query(max_length=40, description="RFC 3339; default now")] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """Expiry is not a log change, so a follower asks for what expired since its last fetch."""
    return feeds.expired(node, key, since, until, after, limit)
