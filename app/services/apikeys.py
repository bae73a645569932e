"""API keys: created by the operator, stored as SHA-256, checked on every request.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them (no password
stretching is needed for secrets that cannot be guessed); the clear key is shown once.

Each worker caches a valid key for `CACHE_SECONDS`, so the match path costs no database read per
request. Revoking clears the revoking worker's cache at once; other workers stop accepting the
key within `CACHE_SECONDS`. Unknown keys are never cached, so a new key works at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from app.errors import Forbidden, NotFound, Unauthenticated
from app.schemas import ApiKeyCreated, ApiKeyOut
from app.services.node import Node
from app.services.tx import transaction
from app.storage import repos
from app.storage.models import ApiKeyRow
from app.storage.types import utcnow

CACHE_SECONDS = 1.0
KEY_PREFIX = "sgn_"
SCOPES = ("submit", "match", "read", "feedback", "admin", "audit", "feed")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the parts of an API key a request needs."""

    id: int
    name: str
    scopes: frozenset[str]
    member: bool

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, key_hash: str) -> Caller | None:
        with self._lock:
            hit = self._entries.get(key_hash)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key_hash: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) > 10_000:  # bounded: drop everything rather than grow
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + CACHE_SECONDS, caller)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_caches: dict[int, _Cache] = {}


def _cache(node: Node) -> _Cache:
    return _caches.setdefault(id(node.db), _Cache())


def to_out(row: ApiKeyRow) -> ApiKeyOut:
    return ApiKeyOut(
        id=row.id or 0,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes,
        member=row.member,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create(node: Node, name: str, scopes: list[str], member: bool = False) -> ApiKeyCreated:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        from app.errors import InvalidInput

        raise InvalidInput("scopes", f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction(node) as tx:
        row = ApiKeyRow(
            name=name,
            prefix=key[:12],
            key_hash=_hash(key),
            scopes=sorted(set(scopes)),
            member=member,
        )
        tx.session.add(row)
        tx.session.flush()
        tx.append(
            "apikey.created",
            {"key": row.id, "name": name, "prefix": row.prefix, "scopes": row.scopes},
        )
        return ApiKeyCreated(**to_out(row).model_dump(), key=key)


def list_keys(node: Node) -> list[ApiKeyOut]:
    with node.db.read() as session:
        return [to_out(r) for r in repos.api_keys(session)]


def revoke(node: Node, key_id: int) -> ApiKeyOut:
    with transaction(node) as tx:
        row = tx.session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"no API key with id {key_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            tx.session.add(row)
            tx.append("apikey.revoked", {"key": row.id, "prefix": row.prefix})
    _cache(node).clear()
    return to_out(row)


def authenticate_cached(node: Node, key: str | None, scope: str) -> Caller | None:
    """The caller from this worker's cache, without I/O; None when the cache cannot say."""
    if not key:
        raise Unauthenticated("missing API key: send `Authorization: Bearer <key>`")
    caller = _cache(node).get(_hash(key))
    if caller is not None and not caller.allows(scope):
        raise Forbidden(f"this API key lacks the '{scope}' scope")
    return caller


def authenticate(node: Node, key: str | None, scope: str) -> Caller:
    """The caller if the key is valid and holds `scope` (or `admin`); 401/403 otherwise."""
    cached = authenticate_cached(node, key, scope)
    if cached is not None:
        return cached
    assert key is not None  # authenticate_cached refused a missing key
    key_hash = _hash(key)
    with node.db.read() as session:
        row = repos.api_key_by_hash(session, key_hash)
    if row is None or row.revoked_at is not None or row.id is None:
        raise Unauthenticated("unknown or revoked API key")
    caller = Caller(id=row.id, name=row.name, scopes=frozenset(row.scopes), member=row.member)
    _cache(node).put(key_hash, caller)
    if not caller.allows(scope):
        raise Forbidden(f"this API key lacks the '{scope}' scope")
    return caller


def identify(node: Node, key: str | None) -> Caller:
    """The caller a valid key belongs to, whatever its scopes (the console shows what they
    allow); 401 for a missing, unknown or revoked key. Same cache as `authenticate`."""
    if not key:
        raise Unauthenticated("missing API key")
    key_hash = _hash(key)
    cached = _cache(node).get(key_hash)
    if cached is not None:
        return cached
    with node.db.read() as session:
        row = repos.api_key_by_hash(session, key_hash)
    if row is None or row.revoked_at is not None or row.id is None:
        raise Unauthenticated("unknown or revoked API key")
    caller = Caller(id=row.id, name=row.name, scopes=frozenset(row.scopes), member=row.member)
    _cache(node).put(key_hash, caller)
    return caller
