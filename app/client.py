"""A small synchronous client for a node's REST API, for CLI verbs that talk to a node.

The node is named by a base URL and an API key, from arguments or the `SIGNET_URL` and
`SIGNET_API_KEY` environment variables. One `httpx.Client` (one small connection pool) is kept
for the life of a `NodeClient`: the sync client is the fast one here, and reusing connections
matters more than concurrency for a CLI (see the design brief's httpx figures).

Errors: a refusal by the node (4xx/5xx) raises `NodeRequestError` carrying the status and the
RFC 9457 problem body; a connection failure raises `NodeUnreachable`. Both are `SignetError`s,
so the `signet` entry point prints them as one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import httpx

from app.errors import SignetError

__all__ = ["DEFAULT_URL", "NodeClient", "NodeRequestError", "NodeUnreachable", "batches"]

DEFAULT_URL = "http://127.0.0.1:8000"


class NodeRequestError(SignetError):
    """The node answered with an error status. `problem` is its problem+json body, if any."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        title = problem.get("title") or "request failed"
        detail = problem.get("detail")
        super().__init__(f"node answered {status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.problem = problem


class NodeUnreachable(SignetError):
    """No answer from the node (refused, timed out, bad URL)."""


def batches(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """(offset, slice) pairs of at most `size` items, in order."""
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


class NodeClient:
    """`with NodeClient() as c: c.match([...])`. Keys are sent as a bearer token and never
    printed; the URL may carry no credentials."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("SIGNET_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("SIGNET_API_KEY")
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON answer (None for an empty body)."""
        try:
            resp = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"cannot reach {self.url}: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise NodeRequestError(resp.status_code, body if isinstance(body, dict) else {})
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    # --- API verbs used by more than one command -----------------------------------------

    def submit_signals(self, signals: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /v1/signals: one batch; the answer has one item per signal, in order."""
        result: dict[str, Any] = self.post("/v1/signals", {"signals": signals})
        return result

    def match(self, queries: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /v1/match: one batch; the answer has one result per query, in order."""
        result: dict[str, Any] = self.post("/v1/match", {"queries": queries})
        return result

    def oprf_evaluate(self, epoch: str, blinded: list[str]) -> dict[str, Any]:
        """POST /v1/identifiers/oprf/evaluate: blinded elements to the key holders, verified
        partials back (`hash_identifiers_oprf` verifies them again and combines them)."""
        result: dict[str, Any] = self.post(
            "/v1/identifiers/oprf/evaluate", {"epoch": epoch, "blinded": blinded}
        )
        return result

    def oprf_epochs(self) -> dict[str, Any]:
        """GET /v1/identifiers/oprf/epochs: the public epochs this node serves."""
        result: dict[str, Any] = self.get("/v1/identifiers/oprf/epochs")
        return result
