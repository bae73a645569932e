"""Errors raised by `app.crypto`, on top of the tree in `app.errors`.

SignetError
├── InvalidInput
│   └── MalformedError      (also a CryptoError) text or bytes that do not parse  -> 400
├── NotFound
│   └── UnknownLogError     tlog-witness: no pinned key for the checkpoint origin -> 404
├── Conflict
│   └── WitnessConflict     tlog-witness: old size is not the size we cosigned    -> 409
│       └── EquivocationError   same size, different root: carries both notes     -> 409
└── CryptoError
    ├── KeyFileError        (also a ConfigError) unusable node key file
    ├── VerificationError   a signature did not verify                            -> 403
    │   └── UnknownKeyError     no pinned key for the signer
    └── ProofError          a Merkle proof did not verify                         -> 422
"""

from __future__ import annotations

from app.errors import ConfigError, Conflict, CryptoError, InvalidInput, NotFound, VerificationError

__all__ = [
    "EquivocationError",
    "KeyFileError",
    "MalformedError",
    "UnknownKeyError",
    "UnknownLogError",
    "WitnessConflict",
]


class MalformedError(InvalidInput, CryptoError):
    """A key, note, checkpoint, record or proof is syntactically malformed.

    An `InvalidInput` first (so the API answers 400), and a `CryptoError` so that callers
    catching every crypto failure in one place also catch it.
    """


class KeyFileError(CryptoError, ConfigError):
    """The node key file is missing, unreadable, malformed or too widely readable."""


class UnknownKeyError(VerificationError):
    """The signer is not pinned here (unknown origin or key), so nothing can be verified."""


class UnknownLogError(NotFound):
    """tlog-witness: this witness has no pinned key for the checkpoint's origin."""


class WitnessConflict(Conflict):
    """tlog-witness: the request's old size is not the size this witness last cosigned.

    `known_size` is that size; the API returns it as `text/x.tlog.size`.
    """

    def __init__(self, message: str, known_size: int) -> None:
        super().__init__(message)
        self.known_size = known_size


class EquivocationError(WitnessConflict):
    """The log signed two different roots for one tree size.

    `evidence` holds both signed notes (the one cosigned before, the new one): together they
    prove the log misbehaved to anyone holding its key.
    """

    def __init__(
        self, message: str, known_size: int, origin: str, evidence: tuple[str, str]
    ) -> None:
        super().__init__(message, known_size)
        self.origin = origin
        self.evidence = evidence
