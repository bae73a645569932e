"""Client-side normalisation and keyed hashing of raw identifiers.

Raw identifiers never leave the platform that saw them: the platform normalises each one here and
sends only its keyed hash. Every federation member must reproduce this byte for byte.

Construction (version 1)::

    normalized = normalize_identifier(type, raw)            # rules below, a str
    message    = (type + ":" + normalized).encode("utf-8")  # type is email|phone|username|payment
    value      = HMAC-SHA256(key, message).hexdigest()      # 64 lowercase hex

`key` is the federation identifier key named by `key_id` (at least 32 bytes); the signal carries
`value` and `key_id`. This shared-key mode is the weaker choice: anyone holding the key can hash
every phone number of a country and read identifier signals back. The threshold OPRF mode
(`hash_identifiers_oprf`, below; docs/identifiers.md) replaces the key with an RFC 9497 VOPRF
whose key no single party holds::

    input  = (type + ":" + normalized).encode("utf-8")   # the same message as above
    output = VOPRF(k, input)                              # ristretto255-SHA512, 64 bytes
    value  = output[:32].hex()                            # 64 lowercase hex, like HMAC mode

with `key_id` = the OPRF epoch id. `k` is Shamir-shared among key-holder nodes; the client
blinds `input`, its node forwards the blinded element to `threshold` holders, and the client
verifies each holder's proof, combines, unblinds and hashes.

The type prefix separates the types: the same string as a username and as an email local part
hashes differently.

Normalisation rules:

- `email`: trim; NFKC; lowercase (`str.lower`); exactly one `@`; a `+tag` subaddress is dropped
  for every domain (when something precedes the `+`: plus-addressing reaches the same mailbox at
  the big providers, and varying it is a cheap evasion); for `gmail.com` and `googlemail.com` the
  dots in the local part are removed and the domain becomes `gmail.com`; the domain is
  canonicalised as a `domain` signal (IDNA A-labels, no trailing dot).
  ` Jane.Doe+x@GoogleMail.com ` -> `janedoe@gmail.com`.
- `phone`: parsed with `phonenumbers` (a national number needs `default_region`, e.g. `GB`); it
  must be a *possible* number (plausible length for its region) - validity against the current
  numbering plan is not required, so new ranges and reserved fictional ranges still hash and
  members with different metadata versions agree; formatted E.164; extensions dropped.
  `07700 900-123` in GB -> `+447700900123`.
- `username`: `fold_text` (invisible format characters removed, NFKC + casefold to a fixed
  point, whitespace runs collapsed to one space, trimmed), then leading `@`s removed. `platform`
  is checked but not hashed, so the same handle matches across platforms.
  ` @Jane_Doe ` (also in fullwidth letters) -> `jane_doe`.
- `payment`: `kind:id`, below.

Payment identifiers normalise to `kind:id`. Recognised without a prefix:

- IBAN (two letters, two check digits, 11-30 letters/digits; the country's registered length and
  format and the mod-97 checksum checked by `schwifty`; spaces and hyphens ignored) -> `iban:`
  + upper case, e.g. `iban:GB82WEST12345698765432`;
- cashtag `$name` -> `cashtag:` + lowercase name;
- Ethereum-style `0x` + 40 hex -> `eth:0x` + lowercase (EIP-55 mixed case dropped);
- Bitcoin bech32 `bc1...` -> `btc:` + lowercase; Bitcoin base58 (`1...`/`3...`, 25-34 chars) ->
  `btc:` + the address unchanged (base58 is case-sensitive).

Anything else must be sent as `kind:id` with `kind` a lowercase token (`paypal:jane.doe`). Kinds
`iban`, `cashtag`, `eth`, `btc` apply the rules above; `paypal`, `venmo` and `cashtag` ids are
lowercased; other kinds keep the id's case (most crypto addresses are case-sensitive) after NFKC
and trimming.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import phonenumbers
from schwifty import IBAN
from schwifty import exceptions as schwifty_exc

from app.crypto import oprf
from app.crypto import oprf_threshold as th
from app.crypto.oprf_threshold import Epoch
from app.errors import InvalidInput, InvalidSignal
from app.signals.types.identifiers import KEY_ID_RE
from app.signals.types.text import fold_text
from app.signals.types.web import domain_canonical
from app.signals.vocab import IDENTIFIER_TYPES, SignalType

__all__ = [
    "KEY_ID_RE",
    "MIN_KEY_BYTES",
    "hash_identifier",
    "hash_identifiers_oprf",
    "normalize_email",
    "normalize_identifier",
    "normalize_payment",
    "normalize_phone",
    "normalize_username",
    "oprf_message",
]


MIN_KEY_BYTES = 32

_GMAIL = frozenset({"gmail.com", "googlemail.com"})
_PLATFORM = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def normalize_email(s: str) -> str:
    """Normalise an email address (rules in the module docstring); raises InvalidInput."""
    if not isinstance(s, str):
        raise InvalidInput("value", "an email address must be a string")
    addr = unicodedata.normalize("NFKC", s.strip()).lower()
    if addr.count("@") != 1:
        raise InvalidInput("value", "an email address has exactly one '@'")
    local, domain_part = addr.split("@")
    if not local or any(c.isspace() for c in local) or len(local) > 64:
        raise InvalidInput(
            "value", "the local part of an email address is 1-64 characters, no spaces"
        )
    try:
        domain = domain_canonical(domain_part)
    except InvalidSignal as exc:
        raise InvalidInput("value", f"email domain: {exc.reason}") from None
    plus = local.find("+")
    if plus > 0:
        local = local[:plus]
    if domain in _GMAIL:
        domain = "gmail.com"
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


def normalize_phone(s: str, default_region: str | None = None) -> str:
    """E.164 form of a phone number (rules in the module docstring); raises InvalidInput."""
    if not isinstance(s, str):
        raise InvalidInput("value", "a phone number must be a string")
    region = default_region.upper() if default_region else None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput("default_region", "not a supported ISO 3166 region code such as 'GB'")
    try:
        number = phonenumbers.parse(s.strip(), region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidInput(
                "value",
                "no country code: write the number as +<country code>... or give "
                "default_region (e.g. 'GB')",
            ) from None
        raise InvalidInput("value", "not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput("value", "not a possible phone number for its region (wrong length)")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164


def normalize_username(s: str, platform: str | None = None) -> str:
    """Fold a username or handle (rules in the module docstring); raises InvalidInput.

    `platform` (a lowercase token like `instagram`) is validated but not part of the result: the
    same handle is meant to match across platforms. Platform-specific rules would go here.
    """
    if not isinstance(s, str):
        raise InvalidInput("value", "a username must be a string")
    if platform is not None and not _PLATFORM.fullmatch(platform):
        raise InvalidInput("platform", "a platform is a lowercase token like 'instagram'")
    name = fold_text(s).lstrip("@").strip()
    if not name:
        raise InvalidInput("value", "empty username")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput("value", "a username cannot contain control characters")
    return name


_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_ETH = re.compile(r"0[xX][0-9a-fA-F]{40}")
_BECH32 = re.compile(r"(bc1|BC1)[02-9ac-hj-np-zAC-HJ-NP-Z]{6,87}")
_BASE58 = re.compile(r"[13][1-9A-HJ-NP-Za-km-z]{24,33}")
_KIND = re.compile(r"([a-z][a-z0-9_-]{1,19}):(.+)")
_LOWERCASE_KINDS = frozenset({"cashtag", "paypal", "venmo"})


def _iban_problem(iban: str) -> str | None:
    """Why `iban` (compact, upper case) is not a valid IBAN, or None if it is.

    schwifty knows each country's IBAN length and BBAN format (the ISO 13616 registry), which
    a regex and mod-97 alone do not: those passed wrong-length and unknown-country IBANs. Our own
    wording, so the refusal never quotes the value."""
    try:
        IBAN(iban)
    except schwifty_exc.InvalidCountryCode:
        return "unknown IBAN country code"
    except schwifty_exc.InvalidLength:
        return "wrong length for its country's IBANs"
    except (schwifty_exc.InvalidChecksumDigits, schwifty_exc.InvalidBBANChecksum):
        return "IBAN checksum does not match"
    except (schwifty_exc.SchwiftyException, ValueError):
        return "not in its country's IBAN format"
    return None


def _payment_kind(kind: str, ident: str) -> str:
    if kind == "iban":
        compact = re.sub(r"[\s-]", "", ident).upper()
        problem = "not in IBAN format" if not _IBAN.fullmatch(compact) else _iban_problem(compact)
        if problem:
            raise InvalidInput("value", f"not a valid IBAN: {problem}")
        return f"iban:{compact}"
    if kind == "eth":
        if not _ETH.fullmatch(ident):
            raise InvalidInput("value", "an eth address is 0x followed by 40 hex digits")
        return f"eth:{ident.lower()}"
    if kind == "btc":
        if _BECH32.fullmatch(ident):
            return f"btc:{ident.lower()}"
        if _BASE58.fullmatch(ident):
            return f"btc:{ident}"
        raise InvalidInput("value", "not a bitcoin address (bech32 bc1... or base58 1.../3...)")
    if kind == "cashtag":
        ident = ident.removeprefix("$")
    if not ident or any(c.isspace() for c in ident):
        raise InvalidInput("value", "a payment id is non-empty and has no spaces")
    return f"{kind}:{ident.lower() if kind in _LOWERCASE_KINDS else ident}"


def normalize_payment(s: str) -> str:
    """`kind:id` form of a payment identifier (rules in the module docstring)."""
    if not isinstance(s, str):
        raise InvalidInput("value", "a payment identifier must be a string")
    v = unicodedata.normalize("NFKC", s).strip()
    compact = re.sub(r"[\s-]", "", v).upper()
    if _IBAN.fullmatch(compact):  # looks like an IBAN: valid, or refused saying why
        return _payment_kind("iban", compact)
    if v.startswith("$"):
        return _payment_kind("cashtag", v[1:])
    if _ETH.fullmatch(v):
        return _payment_kind("eth", v)
    if _BECH32.fullmatch(v) or _BASE58.fullmatch(v):
        return _payment_kind("btc", v)
    m = _KIND.fullmatch(v)
    if not m:
        raise InvalidInput(
            "value",
            "unrecognised payment identifier: send it as '<kind>:<id>', e.g. 'paypal:name' "
            "(IBANs, $cashtags, 0x... and bitcoin addresses are recognised without a kind)",
        )
    return _payment_kind(m.group(1), m.group(2).strip())


def normalize_identifier(
    type: str,
    raw: str,
    *,
    default_region: str | None = None,
    platform: str | None = None,
) -> str:
    """Normalise `raw` as an identifier of `type` (email, phone, username, payment)."""
    t = _identifier_type(type)
    if t is SignalType.EMAIL:
        return normalize_email(raw)
    if t is SignalType.PHONE:
        return normalize_phone(raw, default_region)
    if t is SignalType.USERNAME:
        return normalize_username(raw, platform)
    return normalize_payment(raw)


def hash_identifier(
    type: str,
    raw: str,
    key: bytes,
    key_id: str,
    *,
    default_region: str | None = None,
    platform: str | None = None,
) -> str:
    """hex HMAC-SHA256(key, type + ":" + normalized): the value an identifier signal carries.

    `key_id` is checked here so a bad one fails on the client, not at the node.
    """
    t = _identifier_type(type)
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise InvalidInput("key_id", "must match [a-z0-9][a-z0-9._-]{0,63}")
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise InvalidInput("key", f"an identifier key is at least {MIN_KEY_BYTES} bytes")
    normalized = normalize_identifier(t, raw, default_region=default_region, platform=platform)
    message = f"{t.value}:{normalized}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def oprf_message(type: str, normalized: str) -> bytes:
    """The OPRF input for an already normalised identifier: the HMAC mode's message."""
    return f"{_identifier_type(type).value}:{normalized}".encode()


def hash_identifiers_oprf(
    type: str,
    raws: Sequence[str],
    epoch: Epoch,
    evaluate: Callable[[str, list[str]], dict[str, Any]],
    *,
    default_region: str | None = None,
    platform: str | None = None,
) -> list[str]:
    """Threshold-OPRF values (64 hex) of identifiers, under `epoch` (its id is the `key_id`).

    `evaluate(epoch_id, blinded_b64)` sends the blinded elements to the node's
    `POST /v1/identifiers/oprf/evaluate` and returns its JSON answer (`NodeClient.oprf_evaluate`
    does). Nothing computable from an identifier leaves this function: only blinded elements,
    which are uniformly random group elements to anyone without the blind. Every holder's
    proof is verified here against `epoch` (the node is not trusted for that); a bad one raises
    `HolderProofError` naming the holder unless `threshold` good ones remain.
    At most 1,000 identifiers per call (the node's batch limit). Raises InvalidInput naming
    `values[i]` for an identifier that does not normalise.
    """
    if not 1 <= len(raws) <= 1000:
        raise InvalidInput("values", "1 to 1000 identifiers per call")
    inputs = []
    for i, raw in enumerate(raws):
        try:
            norm = normalize_identifier(type, raw, default_region=default_region, platform=platform)
        except InvalidInput as exc:
            raise InvalidInput(f"values[{i}]", exc.reason) from None
        inputs.append(oprf_message(type, norm))
    pairs = [oprf.blind(x) for x in inputs]
    blinds = [p[0] for p in pairs]
    blinded = [p[1] for p in pairs]
    answer = evaluate(epoch.epoch, [base64.b64encode(b).decode() for b in blinded])
    if answer.get("epoch") != epoch.epoch or answer.get("accepted") != list(range(len(inputs))):
        raise InvalidInput("values", "the node did not evaluate every element under this epoch")
    partials = []
    for p in answer.get("partials", []):
        try:
            evaluated = tuple(
                oprf.deserialize_element(base64.b64decode(x, validate=True)) for x in p["evaluated"]
            )
            partials.append(
                th.Partial(str(p["holder"]), evaluated, base64.b64decode(p["proof"], validate=True))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise th.HolderProofError(str(p.get("holder", "?")), f"malformed ({exc})") from None
    result = th.finalize(epoch, inputs, blinds, blinded, partials)
    return [out[:32].hex() for out in result.outputs]


def _identifier_type(type: str) -> SignalType:
    try:
        t = SignalType(type)
    except ValueError:
        t = None
    if t is None or t not in IDENTIFIER_TYPES:
        known = ", ".join(sorted(IDENTIFIER_TYPES))
        raise InvalidInput("type", f"not an identifier type; known: {known}")
    return t
