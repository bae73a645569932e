"""`Tx.append_record(record_bytes=...)` (the received-record fast path, app/services/sync.py)
logs exactly the entry the plain path logs: same canonical bytes, same leaf."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.canonical import canonical_json
from app.services import tx as tx_module
from app.services.node import Node
from app.services.tx import transaction
from app.storage import log as log_store

RECORDS: list[dict[str, Any]] = [
    {"kind": "signal", "value": "ab" * 16, "attrs": {}, "audience": {"tlp": "green", "peers": []}},
    # Non-ASCII keys and values, nested lists, escapes: RFC 8785 orders by UTF-16 code units.
    {"z": ["\u00e9", {"\u00fc": 1, "a": [True, None]}], "\u00e9t\u00e9": 'line\nbreak\t"q"'},
    {"deep": {"x": {"y": {"z": [1, 2, {"w": "\U0001f600"}]}}}, "n": -9007199254740991},
]


def test_spliced_entry_is_the_canonical_entry(node: Node) -> None:
    fixed = log_store.utcnow()
    with mock.patch("app.services.tx.utcnow", return_value=fixed), transaction(node) as tx:
        plain = [
            tx.append_record("received", r, "green", **{"from": "p.example", "digest": "d"})
            for r in RECORDS
        ]
        fast = [
            tx.append_record(
                "received",
                r,
                "green",
                record_bytes=canonical_json(r),
                **{"from": "p.example", "digest": "d"},
            )
            for r in RECORDS
        ]
    with node.db.read() as session:
        rows = {e.idx: e.data for e in log_store.entries(session, 0, max(fast) + 1)}
    for p, f in zip(plain, fast, strict=True):
        assert rows[p] == rows[f]
        assert canonical_json(json.loads(rows[f])).decode() == rows[f]


# Extra members of every sort: plain ASCII (the template's case), strings RFC 8785 escapes or
# that are not ASCII, non-strings, and names that sort anywhere around the entry's own.
EXTRAS: list[dict[str, Any]] = [
    {"from": "p.example", "digest": "ab" * 32},
    {"digest": "ab" * 32, "from": "p.example"},
    {"from": "", "digest": "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"},
    {"from": 'q"uote', "digest": "back\\slash"},
    {"from": "tab\there", "digest": "new\nline", "zz": "\x7f"},
    {"from": "p\u00e9.example", "digest": "\U0001f600"},
    {"from": "p.example", "n": 5, "flag": True, "none": None, "list": ["x"]},
    {"aaa": "first", "zzz": "last", "recorc": "before", "recordz": "after"},
    {"kinc": "k", "kinda": "k", "tim": "t", "timez": "t"},
    {},
]


def test_templated_entry_is_the_canonical_entry(node: Node) -> None:
    """The template of `Tx._append_with_record` (made once per kind, time and extra member
    names, filled per record) gives the plain path's bytes for every record and extra, in one
    transaction where templates are reused and across two (a new time)."""
    for _ in range(2):
        with transaction(node) as tx:
            pairs = []
            for extra in EXTRAS:
                for r in RECORDS:
                    plain = tx.append("received", {"record": r, **extra})
                    fast = tx.append_record(
                        "received", r, "green", record_bytes=canonical_json(r), **extra
                    )
                    pairs.append((plain, fast))
            # The template was used (not only the general path): one per set of names.
            made = [k[2] for k, t in tx._templates.items() if t is not None]
            assert ("from", "digest") in made and ("digest", "from") in made
        with node.db.read() as session:
            rows = {e.idx: e.data for e in log_store.entries(session, 0, pairs[-1][1] + 1)}
        for p, f in pairs:
            assert rows[p] == rows[f]
            assert canonical_json(json.loads(rows[f])).decode() == rows[f]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=12) | st.text(st.characters(max_codepoint=0x80), max_size=12))
def test_bare_strings_is_the_bare_pattern(value: str) -> None:
    """The template takes a value as its own canonical text only when RFC 8785 writes it so:
    `_bare_strings` (str methods) must agree with `_BARE` (the regex that specifies it)."""
    assert tx_module._bare_strings({"v": value}) == (tx_module._BARE.fullmatch(value) is not None)


@pytest.mark.parametrize("value", ["", " ", "~", "\x1f", "\x7f", '"', "\\", "\u00e9", "a b"])
def test_bare_strings_at_the_edges(value: str) -> None:
    assert tx_module._bare_strings({"v": value}) == (tx_module._BARE.fullmatch(value) is not None)
    if tx_module._bare_strings({"v": value}):  # what it lets through is written as itself
        assert canonical_json(value) == f'"{value}"'.encode()
