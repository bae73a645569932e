"""Domain errors. No HTTP here: `app/api/problems.py` maps each class to a problem+json.

SignetError
├── InvalidInput            a value a caller sent is unusable (field + reason)
│   └── InvalidSignal       a signal field failed validation or canonicalisation
├── NotFound
├── Conflict
├── AuthError
│   ├── Unauthenticated     no or unknown credentials                 -> 401
│   └── Forbidden           credentials lack the scope or the right   -> 403
├── CryptoError             (app/crypto) bad key, signature, proof, note
│   ├── VerificationError   a signature did not verify
│   └── ProofError          a Merkle inclusion/consistency proof did not verify
├── FederationError         (app/federation) protocol violations by a peer
├── RateLimited             an API key is over SIGNET_RATE_LIMIT             -> 429
└── ConfigError             an unusable setting; the node refuses to start
"""

from __future__ import annotations


class SignetError(Exception):
    """Base of every error Signet raises on purpose."""


class InvalidInput(SignetError):
    """A caller-supplied value is unusable. `field` names it, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidSignal(InvalidInput):
    """A signal failed validation or canonicalisation."""


class NotFound(SignetError):
    """The named object does not exist (or the caller may not know it exists)."""


class Conflict(SignetError):
    """The request conflicts with the current state."""


class AuthError(SignetError):
    """Authentication or authorisation failed."""


class Unauthenticated(AuthError):
    """No credentials, or credentials we do not know."""


class Forbidden(AuthError):
    """Known credentials without the needed scope or right."""


class CryptoError(SignetError):
    """A key, signature, note or proof is malformed or does not verify."""


class VerificationError(CryptoError):
    """A signature did not verify."""


class ProofError(CryptoError):
    """A Merkle proof did not verify."""


class FederationError(SignetError):
    """A peer broke the federation protocol."""


class RateLimited(SignetError):
    """Over a request limit: `retry_after` whole seconds until a request would fit."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(SignetError):
    """An unusable setting; the node refuses to start."""
