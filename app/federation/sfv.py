"""A strict RFC 8941 Structured Field Values subset: what RFC 9421 and RFC 9530 headers need.

Parsed: dictionaries whose members are items or inner lists, with parameters; bare items that
are integers, strings, tokens, byte sequences and booleans. Decimals, lists and the Date /
Display String types of RFC 9651 are refused. Duplicate dictionary keys and duplicate
parameters are refused too (RFC 8941 would let the last one win; for signature metadata an
ambiguity is an attack surface, not a convenience).

Every failure raises `SfvError` (a ValueError). Callers turn it into a protocol error.
"""

from __future__ import annotations

import base64
import binascii
import string
from dataclasses import dataclass

__all__ = [
    "BareItem",
    "InnerList",
    "Item",
    "Params",
    "SfvError",
    "Token",
    "is_key",
    "parse_dictionary",
    "serialize_bare_item",
    "serialize_inner_list",
    "serialize_params",
    "serialize_string",
]

MAX_FIELD_LENGTH = 16_384
_MAX_INTEGER = 999_999_999_999_999

_LCALPHA = frozenset(string.ascii_lowercase)
_DIGITS = frozenset(string.digits)
_ALPHA = frozenset(string.ascii_letters)
_KEY_FIRST = _LCALPHA | {"*"}
_KEY_REST = _LCALPHA | _DIGITS | frozenset("_-.*")
_TCHAR = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~")
_TOKEN_REST = _TCHAR | frozenset(":/")
_B64 = _ALPHA | _DIGITS | frozenset("+/=")


class SfvError(ValueError):
    """A structured field value does not parse or cannot be serialised."""


class Token(str):
    """An RFC 8941 token, kept apart from strings because it serialises without quotes."""

    __slots__ = ()


BareItem = int | bool | str | bytes | Token
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        # "" at the end; every membership test below is against sets/tuples, never a str.
        return self.s[self.i] if self.i < len(self.s) else ""

    def fail(self, what: str) -> SfvError:
        return SfvError(f"{what} at offset {self.i}")

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.i += 1

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t"):
            self.i += 1

    def key(self) -> str:
        if self.peek() not in _KEY_FIRST:
            raise self.fail("expected a key")
        start = self.i
        self.i += 1
        while self.peek() in _KEY_REST:
            self.i += 1
        return self.s[start : self.i]

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == "":
            raise self.fail("expected an item")
        if c == "-" or c in _DIGITS:
            return self.integer()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c == "*" or c in _ALPHA:
            return self.token()
        raise self.fail("unsupported item")

    def integer(self) -> int:
        start = self.i
        if self.peek() == "-":
            self.i += 1
        digits_start = self.i
        while self.peek() in _DIGITS:
            self.i += 1
        ndigits = self.i - digits_start
        if ndigits == 0:
            raise self.fail("expected digits")
        if ndigits > 15:
            raise self.fail("integer too long")
        if self.peek() == ".":
            raise self.fail("decimals are not supported")
        return int(self.s[start : self.i])  # 15 digits keep it within RFC 8941's range

    def string(self) -> str:
        self.i += 1  # opening quote
        out: list[str] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.fail("unterminated string")
            self.i += 1
            if c == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\"):
                    raise self.fail("bad escape in string")
                out.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not (" " <= c <= "~"):
                raise self.fail("bad character in string")
            else:
                out.append(c)

    def token(self) -> Token:
        start = self.i
        self.i += 1
        while self.peek() in _TOKEN_REST:
            self.i += 1
        return Token(self.s[start : self.i])

    def byte_sequence(self) -> bytes:
        self.i += 1  # opening colon
        end = self.s.find(":", self.i)
        if end < 0:
            raise self.fail("unterminated byte sequence")
        chunk = self.s[self.i : end]
        if any(c not in _B64 for c in chunk):
            raise self.fail("bad character in byte sequence")
        try:
            value = base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.fail("bad base64 in byte sequence") from exc
        self.i = end + 1
        return value

    def boolean(self) -> bool:
        self.i += 1
        c = self.peek()
        if c not in ("0", "1"):
            raise self.fail("bad boolean")
        self.i += 1
        return c == "1"

    def params(self) -> Params:
        out: list[tuple[str, BareItem]] = []
        seen: set[str] = set()
        while self.peek() == ";":
            self.i += 1
            self.skip_sp()
            name = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            if name in seen:
                raise self.fail(f"duplicate parameter {name!r}")
            seen.add(name)
            out.append((name, value))
        return tuple(out)

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.params())

    def inner_list(self) -> InnerList:
        self.i += 1  # opening parenthesis
        items: list[Item] = []
        while True:
            self.skip_sp()
            if self.peek() == ")":
                self.i += 1
                return InnerList(tuple(items), self.params())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail("expected space or ')' in inner list")


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """Parse an sf-dictionary. Keys keep their order; duplicates are refused."""
    if not isinstance(text, str):
        raise SfvError("field value is not text")
    if len(text) > MAX_FIELD_LENGTH:
        raise SfvError("field value too long")
    p = _Parser(text)
    p.skip_sp()
    out: dict[str, Item | InnerList] = {}
    if p.peek() == "":
        return out
    while True:
        name = p.key()
        member: Item | InnerList
        if p.peek() == "=":
            p.i += 1
            member = p.inner_list() if p.peek() == "(" else p.item()
        else:
            member = Item(True, p.params())
        if name in out:
            raise p.fail(f"duplicate key {name!r}")
        out[name] = member
        p.skip_ows()
        if p.peek() == "":
            return out
        if p.peek() != ",":
            raise p.fail("expected ','")
        p.i += 1
        p.skip_ows()
        if p.peek() == "":
            raise p.fail("trailing comma")


def serialize_string(value: str) -> str:
    if any(not (" " <= c <= "~") for c in value):
        raise SfvError("string holds a character outside printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_key(text: str) -> bool:
    """True if `text` is a valid dictionary or parameter key."""
    return (
        isinstance(text, str)
        and bool(text)
        and text[0] in _KEY_FIRST
        and all(c in _KEY_REST for c in text[1:])
    )


def _serialize_key(key: str) -> str:
    if not is_key(key):
        raise SfvError(f"invalid key {key!r}")
    return key


def serialize_bare_item(value: BareItem) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > _MAX_INTEGER:
            raise SfvError("integer out of range")
        return str(value)
    if isinstance(value, Token):
        if (
            not value
            or not (value[0] == "*" or value[0] in _ALPHA)
            or any(c not in _TOKEN_REST for c in value[1:])
        ):
            raise SfvError(f"invalid token {value!r}")
        return str.__str__(value)
    if isinstance(value, str):
        return serialize_string(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise SfvError(f"unsupported item type {type(value).__name__}")


def serialize_params(params: Params) -> str:
    out: list[str] = []
    for name, value in params:
        out.append(";" + _serialize_key(name))
        if value is not True:
            out.append("=" + serialize_bare_item(value))
    return "".join(out)


def serialize_inner_list(inner: InnerList) -> str:
    body = " ".join(serialize_bare_item(i.value) + serialize_params(i.params) for i in inner.items)
    return "(" + body + ")" + serialize_params(inner.params)
