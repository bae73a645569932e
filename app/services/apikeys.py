"""API keys: created by the operator, stored as SHA-256, checked on every request.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them (no password
stretching is needed for secrets that cannot be guessed); the clear key is shown once.

Each worker caches a valid key for `CACHE_SECONDS`, so the match path costs no database read per
request. Revoking clears the revoking worker's cache at once; other workers stop accepting the
key within `CACHE_SECONDS`.

Strangers are refused without a database read: each worker also keeps the set of every live
key's hash (the *directory*, a few bytes per key). A key missing from it makes the worker reload
the directory (one query); if the key is still missing, further misses are refused from memory
for `DIRECTORY_REFRESH_SECONDS`. However many made-up keys arrive, they cost at most one query
per worker per interval. A new key works at its first use (its miss reloads the directory),
except within an interval that an unknown key opened; then it works once the interval ends.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
import weakref
from dataclasses import dataclass

from app.errors import Forbidden, NotFound, Unauthenticated
from app.schemas import ApiKeyCreated, ApiKeyOut
from app.services.node import Node
from app.services.tx import transaction
from app.storage import repos
from app.storage.db import Database
from app.storage.models import ApiKeyRow
from app.storage.types import utcnow

CACHE_SECONDS = 1.0
# A cached key expired less than this long ago still answers on the event loop while one
# background thread re-reads it (see `authenticate_nowait`).
STALE_SECONDS = 5.0
DIRECTORY_REFRESH_SECONDS = 1.0
MAX_KEY_CHARS = 128  # ours are 47; anything much longer is refused before it is even hashed
KEY_PREFIX = "sgn_"
_UNKNOWN = "unknown or revoked API key"
SCOPES = ("submit", "match", "read", "feedback", "admin", "audit", "feed", "metrics")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


key_hash = _hash  # public name for the API edge (app/api/overlimit.py)


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
        self._refreshing: set[str] = set()

    def stale(self, key_hash: str) -> tuple[Caller | None, bool]:
        """An entry expired less than STALE_SECONDS ago, and whether the asker is the one to
        re-read it (exactly one asker is, until `refreshed`)."""
        with self._lock:
            hit = self._entries.get(key_hash)
            if hit is None or hit[0] + STALE_SECONDS < time.monotonic():
                return None, False
            claim = key_hash not in self._refreshing
            self._refreshing.add(key_hash)
            return hit[1], claim

    def refreshed(self, key_hash: str, caller: Caller | None) -> None:
        """The re-read's outcome: a fresh entry, or none (the key is gone or revoked)."""
        with self._lock:
            self._refreshing.discard(key_hash)
            if caller is None:
                self._entries.pop(key_hash, None)
        if caller is not None:
            self.put(key_hash, caller)

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


class _Directory:
    """The hashes of every live key, so an unknown key is refused without a database read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: frozenset[str] | None = None
        # Set after a reload that did not find the key asked for: until then a miss is refused
        # from memory. A reload that finds its key (a new key's first use) sets no quiet time.
        self._quiet_until = -math.inf

    def refuses(self, key_hash: str) -> bool:
        """True when a miss is refused from memory right now (no I/O, no wait)."""
        hashes = self._hashes
        return (
            hashes is not None and key_hash not in hashes and time.monotonic() < self._quiet_until
        )

    def might_hold(self, node: Node, key_hash: str) -> bool:
        """Whether `key_hash` may be a live key; on a miss, reload (one query) unless quiet."""
        hashes = self._hashes
        if hashes is not None and key_hash in hashes:
            return True
        with self._lock:  # one reload at a time; the others wait for it and use its answer
            if self._hashes is not None and key_hash in self._hashes:
                return True
            if time.monotonic() < self._quiet_until:
                return False
            with node.db.read() as session:
                self._hashes = frozenset(repos.live_api_key_hashes(session))
            if key_hash in self._hashes:
                return True
            self._quiet_until = time.monotonic() + DIRECTORY_REFRESH_SECONDS
            return False

    def add(self, key_hash: str) -> None:
        with self._lock:
            if self._hashes is not None:
                self._hashes = self._hashes | {key_hash}

    def forget(self, key_hash: str) -> None:
        with self._lock:
            if self._hashes is not None:
                self._hashes = self._hashes - {key_hash}


_caches: dict[int, _Cache] = {}
_directories: weakref.WeakKeyDictionary[Database, _Directory] = weakref.WeakKeyDictionary()
_directories_lock = threading.Lock()


def _cache(node: Node) -> _Cache:
    return _caches.setdefault(id(node.db), _Cache())


def _directory(node: Node) -> _Directory:
    with _directories_lock:
        found = _directories.get(node.db)
        if found is None:
            found = _directories[node.db] = _Directory()
        return found


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


MAX_NAME = 128  # the column's width (api_key.name)


def create(node: Node, name: str, scopes: list[str], member: bool = False) -> ApiKeyCreated:
    from app.errors import InvalidInput

    # Checked here, not only in the API schema: the CLI and the console create keys too, and a
    # name past the column's width is a database error on PostgreSQL (SQLite ignores widths).
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput("name", f"must be 1 to {MAX_NAME} characters (got {len(name)})")
    if not name.isprintable():
        raise InvalidInput("name", "must not contain control characters")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
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
        created = ApiKeyCreated(**to_out(row).model_dump(), key=key)
    _directory(node).add(_hash(key))
    return created


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
    _directory(node).forget(row.key_hash)
    return to_out(row)


def authenticate_cached(node: Node, key: str | None, scope: str) -> Caller | None:
    """The caller from this worker's cache, without I/O; None when the cache cannot say."""
    if not key:
        raise Unauthenticated("missing API key: send `Authorization: Bearer <key>`")
    if len(key) > MAX_KEY_CHARS:
        raise Unauthenticated(_UNKNOWN)
    key_hash = _hash(key)
    if _directory(node).refuses(key_hash):
        raise Unauthenticated(_UNKNOWN)
    caller = _cache(node).get(key_hash)
    if caller is not None and not caller.allows(scope):
        raise Forbidden(f"this API key lacks the '{scope}' scope")
    return caller


def authenticate_nowait(node: Node, key: str | None, scope: str) -> Caller | None:
    """For the event loop: the cached caller, without I/O or waiting; None when the cache
    cannot say (then call `authenticate` in a thread).

    When the key's entry has just expired, the expired entry still answers while one background
    thread re-reads the key. Without this, every CACHE_SECONDS all the requests in flight for a
    key (64 under the benchmark's load) found its entry expired at once and each went to a worker
    thread for its own database read, queueing behind one another and behind the match work for
    the threads and the GIL (docs/scaling.md, "Tail latency of /v1/match"). A revocation made in
    this process clears the cache at once; one made elsewhere is seen by the re-read, within
    about CACHE_SECONDS as before."""
    caller = authenticate_cached(node, key, scope)
    if caller is not None:
        return caller
    assert key is not None  # authenticate_cached refused a missing key
    key_hash = _hash(key)
    caller, claim = _cache(node).stale(key_hash)
    if caller is None:
        return None
    if claim:
        threading.Thread(
            target=_revalidate, args=(node, key_hash), name="apikey-refresh", daemon=True
        ).start()
    if not caller.allows(scope):
        raise Forbidden(f"this API key lacks the '{scope}' scope")
    return caller


def _revalidate(node: Node, key_hash: str) -> None:
    caller = None
    try:
        with node.db.read() as session:
            row = repos.api_key_by_hash(session, key_hash)
        if row is not None and row.revoked_at is None and row.id is not None:
            caller = Caller(
                id=row.id, name=row.name, scopes=frozenset(row.scopes), member=row.member
            )
    except Exception:  # the database is unreachable: drop the entry, the next request re-reads
        caller = None
    finally:
        _cache(node).refreshed(key_hash, caller)


def authenticate(node: Node, key: str | None, scope: str) -> Caller:
    """The caller if the key is valid and holds `scope` (or `admin`); 401/403 otherwise."""
    cached = authenticate_cached(node, key, scope)
    if cached is not None:
        return cached
    assert key is not None  # authenticate_cached refused a missing key
    key_hash = _hash(key)
    if not _directory(node).might_hold(node, key_hash):
        raise Unauthenticated(_UNKNOWN)
    with node.db.read() as session:
        row = repos.api_key_by_hash(session, key_hash)
    if row is None or row.revoked_at is not None or row.id is None:
        raise Unauthenticated(_UNKNOWN)
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
