"""Refuse a key already known to be over its rate limit before its request body is read.

FastAPI reads and decodes a request's JSON body before it runs the route's dependencies, so a
flooding key's refused requests would still cost body parsing on the worker everyone shares.
This middleware answers them first, from memory only: which key id the key's hash is (noted by
`app/api/deps.py` when the key last authenticated) and this worker's record that its bucket is
empty (`RateLimiter.refused_for_hash`). Anything it cannot decide without I/O goes on to the
normal path, which applies the same limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import for_error
from app.services import apikeys, ratelimit


class RefuseOverLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await for_error(refusal, scope.get("path"))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> ratelimit.RateLimited | None:
        app = scope.get("app")
        node = getattr(getattr(app, "state", None), "node", None)
        if node is None:
            return None
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                key = value[7:].decode("latin-1").strip()
                limiter = ratelimit.for_db(node.db, node.settings.rate_limit)
                if limiter is None or not key or len(key) > apikeys.MAX_KEY_CHARS:
                    return None
                return limiter.refused_for_hash(apikeys.key_hash(key))
        return None
