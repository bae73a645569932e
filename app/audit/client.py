"""HTTP client for a node's auditor API (`/v1/log/*`), sync httpx with one connection."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from app.audit.errors import AuditFailed
from app.crypto._encoding import b64decode
from app.crypto.errors import MalformedError

PAGE = 1000


class AuditClient:
    def __init__(
        self, url: str, token: str, *, timeout: float = 30.0, http: httpx.Client | None = None
    ) -> None:
        """`http`: an existing client to send through (e.g. a test client); not closed here."""
        self._owned = http is None
        self._http = http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _get(self, path: str, **params: int) -> httpx.Response:
        try:
            resp = self._http.get(path, params=params, headers=self._headers)
        except httpx.HTTPError as exc:
            raise AuditFailed(f"GET {path}: {exc}") from exc
        if resp.status_code != 200:
            detail = resp.text[:300]
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(resp.json().get("detail", detail))
            raise AuditFailed(f"GET {path} {params or ''}: HTTP {resp.status_code}: {detail}")
        return resp

    def _json(self, path: str, **params: int) -> Any:
        try:
            return self._get(path, **params).json()
        except ValueError as exc:
            raise AuditFailed(f"GET {path}: the node answered with invalid JSON") from exc

    def checkpoint(self) -> str:
        return self._get("/v1/log/checkpoint").text

    def checkpoint_at(self, size: int) -> str:
        """The checkpoint published at `size`, with the cosignatures gathered so far."""
        return self._get("/v1/log/checkpoint", size=size).text

    def entries(self, start: int, end: int) -> list[tuple[int, Any, bytes | None]]:
        """One page of entries from `start` (possibly fewer than asked, never empty)."""
        page = self._json("/v1/log/entries", start=start, end=end)
        if not isinstance(page, list) or not page:
            raise AuditFailed(f"entries [{start}, {end}): the node returned no entries")
        out: list[tuple[int, Any, bytes | None]] = []
        for item in page:
            try:
                leaf = item.get("leaf_hash")
                out.append(
                    (
                        int(item["index"]),
                        item["entry"],
                        b64decode(leaf, "leaf_hash") if leaf else None,
                    )
                )
            except (AttributeError, KeyError, TypeError, ValueError, MalformedError) as exc:
                raise AuditFailed(f"entries from {start}: malformed item ({exc})") from exc
        return out

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        body = self._json("/v1/log/proof/consistency", **{"from": size1, "to": size2})
        return _hashes(body, f"consistency proof {size1}->{size2}")

    def inclusion(self, index: int, size: int) -> list[bytes]:
        body = self._json("/v1/log/proof/inclusion", index=index, size=size)
        return _hashes(body, f"inclusion proof of {index} at {size}")


def _hashes(body: Any, what: str) -> list[bytes]:
    try:
        return [b64decode(h, what) for h in body["hashes"]]
    except (KeyError, TypeError, MalformedError) as exc:
        raise AuditFailed(f"{what}: malformed response ({exc})") from exc
