"""The one place the federation does network I/O: signed HTTP requests to peer nodes.

A sync `httpx.Client` with a small connection pool, reused for every peer (the async client
collapses under many concurrent connections, encode/httpx#3215). Every request but the
descriptor fetch is signed per RFC 9421 with our node key, `keyid` = our origin.

Tests inject clients per base URL (`clients={"http://b.test": TestClient(app_b)}`) so several
nodes run in one process without sockets; anything not listed goes over the network.

Bounded calls (docs/security.md, "Threat model: peers"). A peer may turn hostile, so every
call has a TOTAL deadline (`deadline`, checked between reads; a read or connect waits at most
`io_timeout`, so a call ends within deadline + io_timeout even if the peer drips one byte at a
time) and a size cap enforced while streaming: the body is read chunk by chunk and the call is
abandoned as soon as it passes the cap, so a 400 MiB page costs at most the cap in memory. We
ask for `identity` encoding and refuse a compressed body, so no decompression bomb either.

Errors: `PeerUnreachable` (transport failure, timeout, or a 5xx), `PeerRefused` (the peer
answered 4xx; carries the status and its problem+json), `PeerLimitExceeded` (past the deadline
or the size cap), `MalformedPage` for a body that does not parse. All are `FederationError`s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from app.errors import FederationError
from app.federation.httpsig import sign_request
from app.federation.pages import MAX_PAGE_BYTES, Notify, RecordsPage

__all__ = ["PeerClient", "PeerLimitExceeded", "PeerRefused", "PeerUnreachable"]

USER_AGENT = "signet-federation/1"
MAX_DESCRIPTOR_BYTES = 64 * 1024
MAX_REPLY_BYTES = 64 * 1024  # notify and add-checkpoint answers: a line or a problem+json


class PeerUnreachable(FederationError):
    """The peer could not be reached, timed out, or failed on its side (5xx)."""


class PeerLimitExceeded(FederationError):
    """The peer's answer ran past our total deadline or our size cap; we hung up."""


def read_bounded(
    resp: httpx.Response, what: str, started: float, max_bytes: int, deadline: float
) -> bytes:
    """The body of a streamed answer, refused past `max_bytes` or past `deadline` seconds
    after `started` (time.monotonic()) - a total deadline, which a per-read timeout is not.
    Compressed answers are refused: their size on the wire says nothing of their size."""
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise PeerLimitExceeded(f"{what}: compressed answer ({encoding[:20]}) refused")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PeerLimitExceeded(f"{what}: answer of {declared} bytes, cap {max_bytes}")
    buf = bytearray()
    # No chunk_size: with one, httpx buffers until it has that many bytes, and a peer
    # dripping a byte a second would never reach the deadline check below.
    for chunk in resp.iter_raw():
        buf += chunk
        if len(buf) > max_bytes:
            raise PeerLimitExceeded(f"{what}: answer larger than {max_bytes} bytes")
        if time.monotonic() - started > deadline:
            raise PeerLimitExceeded(f"{what}: no complete answer within {deadline:g} s")
    return bytes(buf)


class PeerRefused(FederationError):
    """The peer answered with a 4xx problem."""

    def __init__(self, status: int, detail: str, body: str = "") -> None:
        super().__init__(f"peer answered {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body


class PeerClient:
    """Signed requests from `origin` to other nodes."""

    def __init__(
        self,
        origin: str,
        sign: Callable[[bytes], bytes],
        *,
        clients: Mapping[str, httpx.Client] | None = None,
        timeout: float = 10.0,
        deadline: float = 30.0,
        max_page_bytes: int = MAX_PAGE_BYTES,
        clock: Callable[[], float] = time.time,
        expires_in: int = 60,
    ) -> None:
        self.origin = origin
        self._sign = sign
        self._clients = clients if clients is not None else {}
        self._clock = clock
        self._expires_in = expires_in
        self.deadline = deadline
        self.max_page_bytes = max_page_bytes
        self._http = httpx.Client(
            timeout=min(timeout, deadline),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def _client_for(self, url: str) -> httpx.Client:
        for base, client in self._clients.items():
            if url.startswith(base.rstrip("/") + "/"):
                return client
        return self._http

    def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        signed: bool = True,
        max_bytes: int = MAX_REPLY_BYTES,
    ) -> httpx.Response:
        """One call, its answer read whole but never past `max_bytes` or the total deadline."""
        started = time.monotonic()
        headers: dict[str, str] = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if content_type:
            headers["Content-Type"] = content_type
        if signed:
            headers.update(
                sign_request(
                    method,
                    url,
                    headers,
                    body,
                    keyid=self.origin,
                    sign=self._sign,
                    created=int(self._clock()),
                    expires_in=self._expires_in,
                )
            )
        try:
            with self._client_for(url).stream(method, url, content=body, headers=headers) as resp:
                if resp.status_code >= 500:
                    raise PeerUnreachable(f"{method} {url}: peer answered {resp.status_code}")
                content = self._read_bounded(resp, f"{method} {url}", started, max_bytes)
        except httpx.HTTPError as exc:
            raise PeerUnreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        return httpx.Response(
            resp.status_code, headers=resp.headers, content=content, request=resp.request
        )

    def _read_bounded(
        self, resp: httpx.Response, what: str, started: float, max_bytes: int
    ) -> bytes:
        return read_bounded(resp, what, started, max_bytes, self.deadline)

    @staticmethod
    def _refused(resp: httpx.Response) -> PeerRefused:
        detail = resp.text[:300]
        try:
            problem = resp.json()
            if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
                detail = problem["detail"][:300]
        except ValueError:
            pass
        return PeerRefused(resp.status_code, detail, resp.text[:2000])

    # --- protocol calls --------------------------------------------------------------------

    def descriptor(self, base_url: str) -> dict[str, Any]:
        """The peer's signed descriptor (GET /.well-known/signet; unsigned, it is public)."""
        resp = self.request(
            "GET",
            base_url.rstrip("/") + "/.well-known/signet",
            signed=False,
            max_bytes=MAX_DESCRIPTOR_BYTES,
        )
        if resp.status_code != 200:
            raise self._refused(resp)
        try:
            data = json.loads(resp.content)
        except ValueError:
            raise PeerRefused(resp.status_code, "descriptor is not JSON") from None
        if not isinstance(data, dict):
            raise PeerRefused(resp.status_code, "descriptor is not a JSON object")
        return data

    def pull(self, base_url: str, after: int, limit: int) -> RecordsPage:
        query = urlencode({"after": after, "limit": limit})
        url = f"{base_url.rstrip('/')}/federation/v1/records?{query}"
        resp = self.request("GET", url, max_bytes=self.max_page_bytes)
        if resp.status_code != 200:
            raise self._refused(resp)
        page = RecordsPage.from_json(resp.content, max_bytes=self.max_page_bytes)
        page.check_progress(after)
        return page

    def notify(self, base_url: str, notify: Notify) -> None:
        url = f"{base_url.rstrip('/')}/federation/v1/notify"
        resp = self.request("POST", url, notify.to_json().encode(), content_type="application/json")
        if resp.status_code >= 300:
            raise self._refused(resp)

    def add_checkpoint(self, base_url: str, body: str) -> httpx.Response:
        """POST a tlog-witness add-checkpoint body; the caller reads 200 / 409 / others."""
        url = f"{base_url.rstrip('/')}/federation/v1/witness/add-checkpoint"
        return self.request("POST", url, body.encode(), content_type="text/plain; charset=utf-8")
