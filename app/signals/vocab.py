"""The signal vocabulary: every closed list a signal draws from.

Values are lowercase ASCII tokens and are compared exactly: a vocabulary is part of the signed
record, so near misses (`Grooming`, `grooming `) are refused with a hint rather than repaired.

Categories may be extended by node configuration (`extra`); indicators form a closed list here.
Indicators are behaviour codes only — never content:

| indicator | meaning |
|---|---|
| `age_probe` | asked the other person's age, school year or similar |
| `secrecy_request` | asked to keep the contact secret from parents, friends or the platform |
| `off_platform_migration` | pushed to move the conversation to another app or channel |
| `gift_offer` | offered gifts, money, game currency or favours |
| `image_request` | asked for images or video of the other person |
| `sextortion_threat` | threatened to publish images unless paid or sent more |
| `mass_contact_minors` | contacted many minors in a short time |
| `ad_phone_reuse` | the same contact number reused across many adverts |
| `location_request` | asked where the other person lives, or to meet |
| `payment_request` | asked the other person for money or payment details |
| `emotional_isolation` | set the other person against family or friends |
| `adult_content_exposure` | sent sexual material to a minor |
| `age_misrepresentation` | claimed to be much younger than evidence shows |
| `multiple_accounts` | operated several accounts towards the same people (ban evasion) |
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from app.errors import InvalidSignal

__all__ = [
    "DEFAULT_VALIDITY",
    "DISTANCE_TYPES",
    "EXACT_TYPES",
    "IDENTIFIER_TYPES",
    "MEDIA_TYPES",
    "TEXT_TYPES",
    "TLP",
    "WEB_TYPES",
    "Category",
    "Indicator",
    "Opinion",
    "SignalType",
    "Verdict",
    "parse_choice",
    "validate_categories",
    "validate_indicators",
]


class SignalType(StrEnum):
    PDQ = "pdq"
    MD5 = "md5"
    SHA256 = "sha256"
    PHOTODNA = "photodna"
    URL = "url"
    DOMAIN = "domain"
    KEYWORD = "keyword"
    TEXT_TLSH = "text_tlsh"
    EMAIL = "email"
    PHONE = "phone"
    USERNAME = "username"
    PAYMENT = "payment"
    VPDQ = "vpdq"  # video: frame PDQ hashes (app/signals/types/video.py)


MEDIA_TYPES: frozenset[SignalType] = frozenset(
    {SignalType.PDQ, SignalType.VPDQ, SignalType.MD5, SignalType.SHA256, SignalType.PHOTODNA}
)
WEB_TYPES: frozenset[SignalType] = frozenset({SignalType.URL, SignalType.DOMAIN})
TEXT_TYPES: frozenset[SignalType] = frozenset({SignalType.KEYWORD, SignalType.TEXT_TLSH})
# Identifiers are only ever stored as keyed hashes (HMAC-SHA256 under a federation key).
IDENTIFIER_TYPES: frozenset[SignalType] = frozenset(
    {SignalType.EMAIL, SignalType.PHONE, SignalType.USERNAME, SignalType.PAYMENT}
)
# Matched by nearness, not equality, so they need their own index.
DISTANCE_TYPES: frozenset[SignalType] = frozenset(
    {SignalType.PDQ, SignalType.VPDQ, SignalType.TEXT_TLSH}
)
# Matched by equality of the canonical value. PhotoDNA is matched exactly here: distance matching
# needs Microsoft's licensed matcher, which can be plugged in later.
EXACT_TYPES: frozenset[SignalType] = frozenset(SignalType) - DISTANCE_TYPES


class Category(StrEnum):
    CSAM = "csam"
    CSAM_DISTRIBUTION = "csam_distribution"
    GROOMING = "grooming"
    SEXTORTION = "sextortion"
    CHILD_TRAFFICKING = "child_trafficking"
    TRAFFICKING = "trafficking"
    NCII = "ncii"
    EXPLOITATION_OTHER = "exploitation_other"


class Indicator(StrEnum):
    AGE_PROBE = "age_probe"
    SECRECY_REQUEST = "secrecy_request"
    OFF_PLATFORM_MIGRATION = "off_platform_migration"
    GIFT_OFFER = "gift_offer"
    IMAGE_REQUEST = "image_request"
    SEXTORTION_THREAT = "sextortion_threat"
    MASS_CONTACT_MINORS = "mass_contact_minors"
    AD_PHONE_REUSE = "ad_phone_reuse"
    LOCATION_REQUEST = "location_request"
    PAYMENT_REQUEST = "payment_request"
    EMOTIONAL_ISOLATION = "emotional_isolation"
    ADULT_CONTENT_EXPOSURE = "adult_content_exposure"
    AGE_MISREPRESENTATION = "age_misrepresentation"
    MULTIPLE_ACCOUNTS = "multiple_accounts"


class Opinion(StrEnum):
    INVESTIGATION_SEED = "investigation_seed"
    POSITIVE = "positive"
    NEGATIVE = "negative"


class TLP(StrEnum):
    """Traffic Light Protocol 2.0 levels, as Signet applies them to a signal's audience."""

    RED = "red"  # never leaves this node
    AMBER = "amber"  # named peers only, no relay
    GREEN = "green"  # federation members, relay allowed
    CLEAR = "clear"  # may also go to public feeds


class Verdict(StrEnum):
    SEEN = "seen"
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"
    DISPUTED = "disputed"
    APPEAL_OVERTURNED = "appeal_overturned"


# How long a signal stays valid when the submitter gives no `valid_until`.
# Identifiers (and indicators, which ride on identifier signals) change hands or get recycled;
# keywords and codewords drift fastest; media hashes of known material stay relevant longest;
# URLs, domains and text templates move on within months.
DEFAULT_VALIDITY: dict[SignalType, timedelta] = {
    SignalType.PDQ: timedelta(days=730),
    SignalType.VPDQ: timedelta(days=730),
    SignalType.MD5: timedelta(days=730),
    SignalType.SHA256: timedelta(days=730),
    SignalType.PHOTODNA: timedelta(days=730),
    SignalType.URL: timedelta(days=180),
    SignalType.DOMAIN: timedelta(days=180),
    SignalType.KEYWORD: timedelta(days=90),
    SignalType.TEXT_TLSH: timedelta(days=180),
    SignalType.EMAIL: timedelta(days=365),
    SignalType.PHONE: timedelta(days=365),
    SignalType.USERNAME: timedelta(days=365),
    SignalType.PAYMENT: timedelta(days=365),
}

# Shape of a vocabulary token, also what configured extra categories must look like.
TOKEN_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

E = TypeVar("E", bound=StrEnum)


def _hint(value: str, known: Iterable[str]) -> str:
    folded = value.strip().lower().replace("-", "_").replace(" ", "_")
    return f" (did you mean '{folded}'?)" if folded != value and folded in known else ""


def parse_choice(enum: type[E], value: object, field: str) -> E:
    """Return the member of `enum` named exactly by `value`, or raise InvalidSignal(field)."""
    known = [m.value for m in enum]
    if not isinstance(value, str):
        raise InvalidSignal(field, f"must be a string, one of: {', '.join(known)}")
    try:
        return enum(value)
    except ValueError:
        raise InvalidSignal(
            field, f"unknown value '{value[:64]}'{_hint(value, known)}; known: {', '.join(known)}"
        ) from None


def _validate_tokens(
    values: object, known: frozenset[str], field: str, what: str, *, required: bool
) -> list[str]:
    if type(values) is list and values and _all_known(values, known):
        # The usual case, a list of known names, checked in C (every signal has two lists;
        # the loop below, which names the first bad item, was 5 % of a bulk submit).
        return sorted(set(values))
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidSignal(field, f"must be a list of {what}")
    out: set[str] = set()
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidSignal(
                f"{field}[{i}]", f"must be a string, one of: {', '.join(sorted(known))}"
            )
        if value not in known:
            raise InvalidSignal(
                f"{field}[{i}]",
                f"unknown {_SINGULAR.get(what, what)} '{value[:64]}'{_hint(value, known)}; "
                f"known: {', '.join(sorted(known))}",
            )
        out.add(value)
    if required and not out:
        raise InvalidSignal(field, f"at least one of: {', '.join(sorted(known))}")
    return sorted(out)


def _all_known(values: list[Any], known: frozenset[str]) -> bool:
    try:
        return known.issuperset(values)
    except TypeError:  # an unhashable item (a list, an object): the loop names it
        return False


_SINGULAR = {"categories": "category", "indicators": "indicator"}
_CATEGORIES = frozenset(c.value for c in Category)
_INDICATORS = frozenset(i.value for i in Indicator)


def validate_categories(values: object, extra: frozenset[str] = frozenset()) -> list[str]:
    """Sorted unique categories; at least one. `extra` are the node's configured additions."""
    return _validate_tokens(
        values,
        _CATEGORIES | extra if extra else _CATEGORIES,  # not rebuilt per call: a hot path
        "categories",
        "categories",
        required=True,
    )


def validate_indicators(values: object, extra: frozenset[str] = frozenset()) -> list[str]:
    """Sorted unique indicators; may be empty."""
    return _validate_tokens(
        values,
        _INDICATORS | extra if extra else _INDICATORS,
        "indicators",
        "indicators",
        required=False,
    )
