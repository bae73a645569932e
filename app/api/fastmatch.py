"""The upload-time match, answered ahead of the router.

A platform calls `POST /v1/match` once per upload, most often with one md5 or one PDQ code.
Under load, a py-spy profile of a worker put the match itself at a few per cent of such a
request and FastAPI's per-request machinery (routing, dependency resolution, the request and
response objects) at about half of the event loop's time: with one worker at 64 connections,
that queue is the p99 (docs/scaling.md, "Tail latency of /v1/match").

So this middleware, the innermost, answers exactly those requests itself: a JSON body that
`MatchBatchIn` accepts, of a few plain md5 or PDQ queries (`plain_match`), from a key this
worker has cached that holds the `match` scope and has a leased token to spend. It does what
the route does for them (the same validation, the same coalesced search, the same metrics) and
sends the bytes FastAPI would have sent. Everything else, including every request that will be
refused, goes on to the route with its body replayed, so each error answer comes from one
place. The outer middleware (request id and metrics, the over-limit refusal, the body limit)
runs for both.
"""

from __future__ import annotations

import json

from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import observability
from app.api.deps import authorize_nowait, bearer_key_of
from app.api.signals import match_plain, plain_match, router
from app.schemas import MatchBatchIn, MatchBatchResult

PATH = "/v1/match"
# A plain request (at most 4 md5s or PDQ codes) is a few hundred bytes. Larger bodies go
# straight to the route: a body the fast path parsed and then left to the route is parsed
# twice, so a flood of large refused requests must not get that for free.
MAX_PLAIN_BODY = 4096
# FastAPI serialises a route's response model with its TypeAdapter's dump_json (by alias);
# tests/api/test_fast_match.py compares both paths' bytes.
_RESULT = TypeAdapter(MatchBatchResult)
_ROUTE = next(r for r in router.routes if getattr(r, "path", None) == PATH)


class MatchFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)  # over the limit: BodyLimit (outside) refuses it
        if body is None:  # the client went away before its body arrived: no one to answer
            return
        answer = await self._answer(scope, body)
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        # The route, as the router would have set it: the metrics name it (app/observability.py).
        scope["route"] = _ROUTE
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        """The response body, or None to leave the request to the route."""
        if len(body) > MAX_PLAIN_BODY:
            return None
        content_type = authorization = None
        # The first of each, as Starlette's `headers.get` reads them for the route.
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"authorization" and authorization is None:
                authorization = value
        # FastAPI parses the body as JSON for application/json and application/*+json; the
        # common form is enough here, the rest takes the route.
        if content_type is None or content_type.split(b";", 1)[0].strip().lower() != (
            b"application/json"
        ):
            return None
        try:
            queries = MatchBatchIn.model_validate(json.loads(body)).queries
        except (ValueError, ValidationError, RecursionError):  # bad JSON, deep nesting too
            return None
        app = scope["app"]
        node = app.state.node
        if not plain_match(node, queries):
            return None
        key = bearer_key_of(authorization.decode("latin-1") if authorization else None)
        caller = authorize_nowait(node, key, "match")
        if caller is None:
            return None
        result = await match_plain(app, node, caller.id, queries)
        observability.count_matches(queries, result)
        return _RESULT.dump_json(result, by_alias=True)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the route: the body already read, then the connection's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
