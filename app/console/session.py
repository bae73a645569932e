"""Console sessions: the API key, sealed in an HttpOnly cookie, and CSRF tokens.

Decision: the session cookie carries the API key itself, encrypted and authenticated with
AES-256-GCM under a secret only this node can derive (no session table, no migration, and
every worker of the node reads it). Each request then authenticates that key through
`app.services.apikeys`, exactly as the API does, so revoking the key ends its sessions at
once and a page shows only what the key's scopes allow. Sessions expire after
`SESSION_SECONDS`.

The secret is SHA-256 of the node key's Ed25519 signature over a fixed label. Ed25519
signatures are deterministic, so every worker derives the same secret without the node
key's seed leaving `NodeKey`, and rotating the node key ends every console session.

CSRF: a random `signet_csrf` cookie (HttpOnly, SameSite=Strict) and, in each form, a token
that is an HMAC of it under the same secret. A POST without both, or with a token that does
not match, is refused (synchronizer token bound to the browser; SameSite=Strict on top).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.crypto.keys import NodeKey

SESSION_COOKIE = "signet_session"
CSRF_COOKIE = "signet_csrf"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 8 * 3600
_AAD = b"signet console session v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_secret(key: NodeKey) -> bytes:
    """32 bytes only this node can compute (see the module docstring)."""
    return hashlib.sha256(key.sign(b"signet console session secret v1")).digest()


@dataclass(frozen=True)
class Session:
    api_key: str
    expires: int


class Sealer:
    """Seals and opens session cookies; makes and checks CSRF tokens."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._aead = AESGCM(secret)

    def seal(self, api_key: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        payload = json.dumps({"k": api_key, "e": expires}, separators=(",", ":")).encode()
        nonce = os.urandom(12)
        return _b64(nonce + self._aead.encrypt(nonce, payload, _AAD))

    def open(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None if it is missing, forged, altered or expired."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = _unb64(cookie)
            payload = json.loads(self._aead.decrypt(raw[:12], raw[12:], _AAD))
            session = Session(api_key=str(payload["k"]), expires=int(payload["e"]))
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None
        if session.expires < (now or time.time()):
            return None
        return session

    @staticmethod
    def new_csrf_cookie() -> str:
        return secrets.token_urlsafe(32)

    def csrf_token(self, cookie: str) -> str:
        return _b64(hmac.new(self._secret, b"csrf\n" + cookie.encode(), hashlib.sha256).digest())

    def check_csrf(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.csrf_token(cookie), token)
