"""Matching: what a platform calls at upload time.

Queries are answered from the worker's in-memory `MatchIndex` (kept in step by
`app.services.index_sync`, which also keeps what a hit shows), without any database read.
A `text` query (a message the platform sends to its own node) is folded, split into words and
probed for keyword phrases, and hashed with TLSH for near-duplicate templates; the text is never
stored or logged.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

import numpy as np
import tlsh
from pydantic import ValidationError

from app.errors import InvalidInput, InvalidSignal
from app.schemas import (
    ItemError,
    MatchBatchResult,
    MatchHit,
    MatchQuery,
    MatchResult,
    VideoMatch,
)
from app.services import roster
from app.services.node import Node
from app.services.signals import key_id_of, pydantic_item_error
from app.signals.match_index import match_key
from app.signals.textfold import join_spaced, leet_fold, match_key_text
from app.signals.types import canonicalize
from app.signals.types.text import fold_text
from app.signals.types.video import DEFAULT_COMPARED_PERCENT, DEFAULT_QUERY_PERCENT, parse_vpdq
from app.signals.types.web import url_hash_v1
from app.signals.vocab import IDENTIFIER_TYPES, SignalType

DEFAULT_PDQ_THRESHOLD = 31
DEFAULT_TLSH_THRESHOLD = 70  # TLSH's own guidance: < 100 similar, < 50 very similar
MAX_TEXT = 65536
_PDQ = re.compile(r"[0-9a-fA-F]{64}")
# Word edges: punctuation around words does not stop a keyword from matching.
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")

Hit = tuple[int, int | None, str | None, VideoMatch | None]  # row, distance, rule, video


def match_batch(node: Node, queries: list[Any]) -> MatchBatchResult:
    if len(queries) > node.settings.max_batch:
        raise InvalidInput("queries", f"at most {node.settings.max_batch} queries per request")
    _refuse_wide_pdq(queries, node.settings.max_pdq_threshold)
    cap = node.settings.max_matches_per_query
    now = time.time()
    hits: list[list[Hit]] = [[] for _ in queries]
    errors: dict[int, ItemError] = {}
    pdq_groups: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for i, raw in enumerate(queries):
        try:
            if not isinstance(raw, dict):
                raise InvalidSignal("", "each query must be a JSON object")
            q = MatchQuery.model_validate(raw)
            if q.type == SignalType.PDQ:
                if not _PDQ.fullmatch(q.value):
                    raise InvalidSignal("value", "a PDQ hash is 64 hex digits")
                threshold = DEFAULT_PDQ_THRESHOLD if q.threshold is None else q.threshold
                pdq_groups[threshold].append((i, bytes.fromhex(q.value)))
            elif q.type == SignalType.VPDQ:
                hits[i] = _match_video(node, q, now)
            elif q.type == "text":
                hits[i] = _match_text(node, q, now)
            elif q.type == SignalType.KEYWORD:
                # By fold 2 key of the raw value (skeletons before casefolding), so an
                # evasive spelling of the keyword finds it too.
                canonicalize(q.type, q.value)  # refuses what is not a keyword at all
                phrase = match_key_text(q.value)
                if q.leet:
                    phrase = leet_fold(phrase)
                by_key = node.index.keywords_in([phrase], now, leet=q.leet)
                hits[i] = [(r, None, None, None) for r, _ in by_key]
            elif q.type == SignalType.TEXT_TLSH:
                digest = canonicalize(q.type, q.value).value
                threshold = DEFAULT_TLSH_THRESHOLD if q.threshold is None else q.threshold
                hits[i] = [(r, d, None, None) for r, d in node.index.tlsh(digest, threshold, now)]
            else:
                key_id = q.key_id if q.type in IDENTIFIER_TYPES else None
                canon = canonicalize(q.type, q.value, key_id=key_id)
                key = match_key(canon.type, canon.value, key_id_of(canon.extra))
                rows = node.index.exact(key, now)
                if canon.type == SignalType.URL and canon.extra.get("canon"):
                    # Signals hashed under canonical form 1 keep matching (web.py docstring).
                    old = url_hash_v1(q.value)
                    if old is not None and old != canon.value:
                        rows = sorted({*rows, *node.index.exact(match_key("url", old), now)})
                hits[i] = [(r, None, None, None) for r in rows]
                if canon.type in (SignalType.URL, SignalType.DOMAIN):
                    hits[i] += _covering(node, canon.value, canon.extra, now, hits[i])
        except ValidationError as exc:
            errors[i] = pydantic_item_error(exc, f"queries[{i}]")
        except InvalidInput as exc:
            errors[i] = ItemError(
                field=f"queries[{i}]" + (f".{exc.field}" if exc.field else ""), reason=exc.reason
            )
    for threshold, group in pdq_groups.items():
        codes = np.frombuffer(b"".join(c for _, c in group), dtype=np.uint8).reshape(-1, 32)
        for (i, _), found in zip(group, node.index.pdq(codes, threshold, now), strict=True):
            hits[i] = [(r, d, None, None) for r, d in found]
    results = []
    dropped = roster.dropped_nowait(node)  # members removed or suspended, if it says drop
    for i, hs in enumerate(hits):
        if i in errors:
            results.append(MatchResult(index=i, status="rejected", error=errors[i]))
            continue
        matches: list[MatchHit] = []
        truncated = False
        for row_id, distance, matched, video in hs:  # closest first for pdq and text_tlsh
            public = node.index.public(row_id)
            # None: removed between the search and now, no longer a hit.
            if public is None or public["origin"] in dropped:
                continue
            if len(matches) == cap:
                truncated = True
                break
            matches.append(MatchHit(**public, distance=distance, matched=matched, video=video))
        results.append(MatchResult(index=i, status="ok", matches=matches, truncated=truncated))
    return MatchBatchResult(results=results)


def _covering(
    node: Node, value: str, extra: dict[str, str | int], now: float, have: list[Hit]
) -> list[Hit]:
    """Domain signals that cover the query's host through its subdomains (url: the URL's host,
    domain: the domain itself), beyond the exact hits already found."""
    host = extra.get("domain") if "domain" in extra else value
    if not isinstance(host, str):
        return []
    seen = {h[0] for h in have}
    out: list[Hit] = []
    for r, d in node.index.domains_over(host, now):
        if r not in seen:
            seen.add(r)
            out.append((r, None, f"domain:{d}", None))
    return out


def _refuse_wide_pdq(queries: list[Any], limit: int) -> None:
    """Refuse the whole request if any pdq query asks for a threshold above `limit`.

    Not a per-item rejection on purpose: a wide threshold is how a key with only `match` scope
    reads stored hashes back (the distances to one code and its 256 one-bit neighbours spell
    out every code within reach), so such a request gets no answer at all.
    """
    for i, raw in enumerate(queries):
        # vPDQ frames are PDQ codes: the same oracle, the same limit.
        if not isinstance(raw, dict) or raw.get("type") not in ("pdq", "vpdq"):
            continue
        threshold = raw.get("threshold")
        if isinstance(threshold, int) and not isinstance(threshold, bool) and threshold > limit:
            raise InvalidInput(
                f"queries[{i}].threshold",
                f"at most {limit} bits for pdq and vpdq on this node (SIGNET_MAX_PDQ_THRESHOLD)",
            )


def _match_video(node: Node, q: MatchQuery, now: float) -> list[Hit]:
    """vPDQ: frames within `threshold` bits, then the share of the query's distinct usable
    frames matched and of each stored video's, against the query's percentages."""
    frames = parse_vpdq(q.value)  # a query's frames need not be canonical or of good quality
    threshold = DEFAULT_PDQ_THRESHOLD if q.threshold is None else q.threshold
    q_min = DEFAULT_QUERY_PERCENT if q.query_percent is None else q.query_percent
    c_min = DEFAULT_COMPARED_PERCENT if q.compared_percent is None else q.compared_percent
    out: list[Hit] = []
    for row_id, m in node.index.vpdq(frames, threshold, now):
        if m.query_percent >= q_min and m.compared_percent >= c_min:
            video = VideoMatch(
                query_percent=round(m.query_percent, 2),
                compared_percent=round(m.compared_percent, 2),
                query_ranges=m.query_ranges,
                compared_ranges=m.compared_ranges,
            )
            out.append((row_id, m.min_distance, None, video))
    # Best first: the larger share of the query explained, then the nearer frame.
    out.sort(key=lambda h: (-h[3].query_percent if h[3] else 0.0, h[1] or 0, h[0]))
    return out


def _match_text(node: Node, q: MatchQuery, now: float) -> list[Hit]:
    if len(q.value) > MAX_TEXT:
        raise InvalidSignal("value", f"at most {MAX_TEXT} characters")
    folded = fold_text(q.value)
    found: list[Hit] = []
    seen: set[int] = set()
    key = match_key_text(q.value)
    # Fold 2 key, then the same with spaced-out letters joined; with `leet`, both again in
    # leetspeak fold against the leet table. Each probe is linear in the text's length.
    for leet in (False, True) if q.leet else (False,):
        text = leet_fold(key) if leet else key
        words = [w for w in (_EDGE.sub("", t) for t in text.split()) if w]
        joined = join_spaced(words)
        for seq in (words, joined) if joined != words else (words,):
            for r, p in node.index.keywords_in(seq, now, leet=leet):
                if r not in seen:
                    seen.add(r)
                    found.append((r, None, f"keyword:{p}", None))
    digest = tlsh.hash(folded.encode())
    if digest and digest != "TNULL":
        threshold = DEFAULT_TLSH_THRESHOLD if q.threshold is None else q.threshold
        found += [(r, d, "text_tlsh", None) for r, d in node.index.tlsh(digest, threshold, now)]
    return found
