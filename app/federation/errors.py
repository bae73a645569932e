"""Federation protocol errors. Each carries a `status` hint for `app/api/problems.py`.

    FederationError                     (app.errors)
    ├── SignatureRefused                an inter-node request failed RFC 9421 checks     401
    │   ├── MalformedSignature          Signature / Signature-Input unparsable            400
    │   ├── MissingSignature            no Signature / Signature-Input at all             401
    │   ├── MissingComponent            a required component is not covered or absent     401
    │   ├── UnknownKey                  keyid is not a pinned peer                        403
    │   ├── BadSignature                the Ed25519 signature does not verify             401
    │   ├── StaleRequest                created in the future, expired, window too long   401
    │   ├── ReplayedRequest             the nonce was seen in the window                  401
    │   ├── DigestMismatch              the body is not the one Content-Digest names      401
    │   └── NonceCacheFull              cannot remember more nonces; fail closed          503
    ├── AudienceViolation               a record arrived outside its audience             403
    │   ├── OriginNotPinned             record origin (or the relaying peer) not pinned
    │   ├── OwnRecordReturned           one of our own records came back
    │   ├── RedRecordReceived           TLP:RED never leaves its origin
    │   ├── AmberRelayed                TLP:AMBER handed over by someone else than its origin
    │   ├── NotInAudience               the record names peers and we are not one of them
    │   └── HopLimitExceeded            relayed more times than its signed hop limit allows
    ├── MalformedRecord                 a record's audience/routing fields are unusable    400
    │   └── BadHopCount                 the unsigned envelope hop count is impossible
    └── MalformedPage                   a sync page or notify body has the wrong shape     400

    InvalidInput                        (app.errors)
    └── InvalidPolicy                   an operator's sharing policy is unusable           422

Status choice: 401 when the request does not prove who sent it *now* (fix the signature and
retry); 403 when the signature format is fine but the signer is not someone we federate with
(no other credential will help); 400 for a header we cannot even parse (a client bug, as in
takahe's inbox). A body that does not match its signed digest is 401: it is not authenticated.
"""

from __future__ import annotations

from typing import ClassVar

from app.errors import FederationError, InvalidInput

__all__ = [
    "AmberRelayed",
    "AudienceViolation",
    "BadHopCount",
    "BadSignature",
    "DigestMismatch",
    "HopLimitExceeded",
    "InvalidPolicy",
    "MalformedPage",
    "MalformedRecord",
    "MalformedSignature",
    "MissingComponent",
    "MissingSignature",
    "NonceCacheFull",
    "NotInAudience",
    "OriginNotPinned",
    "OwnRecordReturned",
    "RedRecordReceived",
    "ReplayedRequest",
    "SignatureRefused",
    "StaleRequest",
    "UnknownKey",
]


class SignatureRefused(FederationError):
    """An inter-node request failed HTTP message signature checks."""

    status: ClassVar[int] = 401


class MalformedSignature(SignatureRefused):
    """Signature, Signature-Input or a covered value cannot be parsed or is not allowed."""

    status: ClassVar[int] = 400


class MissingSignature(SignatureRefused):
    """The request carries no Signature / Signature-Input header."""

    status: ClassVar[int] = 401


class MissingComponent(SignatureRefused):
    """A required component is not covered by the signature, or is absent from the message."""

    status: ClassVar[int] = 401


class UnknownKey(SignatureRefused):
    """The keyid does not name a peer whose key we pinned."""

    status: ClassVar[int] = 403


class BadSignature(SignatureRefused):
    """The signature does not verify under the peer's pinned key."""

    status: ClassVar[int] = 401


class StaleRequest(SignatureRefused):
    """`created` lies in the future, `expires` has passed, or the window exceeds 5 minutes."""

    status: ClassVar[int] = 401


class ReplayedRequest(SignatureRefused):
    """The (keyid, nonce) pair was already seen inside the window."""

    status: ClassVar[int] = 401


class DigestMismatch(SignatureRefused):
    """The body does not hash to the signed Content-Digest (or no usable digest was sent)."""

    status: ClassVar[int] = 401


class NonceCacheFull(SignatureRefused):
    """The nonce cache is at capacity. We refuse rather than forget nonces (replay risk)."""

    status: ClassVar[int] = 503


class AudienceViolation(FederationError):
    """A record reached us outside the audience its origin signed."""

    status: ClassVar[int] = 403


class OriginNotPinned(AudienceViolation):
    """The record's origin, or the peer that handed it over, has no pinned key here."""


class OwnRecordReturned(AudienceViolation):
    """A peer sent us one of our own records; records never go back to their origin."""


class RedRecordReceived(AudienceViolation):
    """A TLP:RED record left its origin."""


class AmberRelayed(AudienceViolation):
    """A TLP:AMBER record came from a node other than its origin (amber is never relayed)."""


class NotInAudience(AudienceViolation):
    """The record names the peers it is for, and we are not among them."""


class HopLimitExceeded(AudienceViolation):
    """The record has been relayed more often than its signed `audience.hops` allows."""


class MalformedRecord(FederationError):
    """A record's origin, audience, type or categories have the wrong shape."""

    status: ClassVar[int] = 400


class BadHopCount(MalformedRecord):
    """The unsigned envelope `hops` is impossible for who handed the record over."""


class MalformedPage(FederationError):
    """A peer's records page or notify body does not have the protocol's shape."""

    status: ClassVar[int] = 400


class InvalidPolicy(InvalidInput):
    """An operator-supplied sharing policy is unusable (`field` and `reason` say why)."""

    status: ClassVar[int] = 422
