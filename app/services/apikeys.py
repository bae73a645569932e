"""API keys: created by the operator, stored as SHA-256, checked on every request.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them (no password
stretching is needed for secrets that cannot be guessed); the clear key is shown once.
"""

from __future__ import annotations

import hashlib
import secrets

from app.errors import Forbidden, NotFound, Unauthenticated
from app.schemas import ApiKeyCreated, ApiKeyOut
from app.services.node import Node
from app.services.tx import transaction
from app.storage import repos
from app.storage.models import ApiKeyRow
from app.storage.types import utcnow

KEY_PREFIX = "sgn_"
SCOPES = ("submit", "match", "read", "feedback", "admin", "audit", "feed")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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
        return to_out(row)


def authenticate(node: Node, key: str | None, scope: str) -> ApiKeyRow:
    """The key's row if it is valid and holds `scope` (or `admin`); 401/403 otherwise."""
    if not key:
        raise Unauthenticated("missing API key: send `Authorization: Bearer <key>`")
    with node.db.read() as session:
        row = repos.api_key_by_hash(session, _hash(key))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("unknown or revoked API key")
    if scope not in row.scopes and "admin" not in row.scopes:
        raise Forbidden(f"this API key lacks the '{scope}' scope")
    return row
