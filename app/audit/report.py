"""The transparency report: figures computed from verified log entries alone.

Feed it the entries of a log that was verified first (`collect_node` runs the full audit of
`app.audit.run` and keeps the entries), and the checkpoint note that covers them. Nothing
else is read: not the node's database, not its API's counts, not the clock. So two auditors
holding the same log size get byte-identical JSON (`to_json`: sorted keys, no floats, no
generation time).

Figures (decisions, see docs/console.md):

- published / retracted / expired signals by category and type, for records the log holds in
  full; entries about red/amber records are salted commitments, counted as totals by TLP only.
  A retraction is attributed to its signal's type and categories when the log holds that
  signal's record; otherwise it is counted under `unknown`. "Expired" means published in the
  window, not retracted, and `valid_until` at or before the time of the last entry covered
  (the log's own clock; no wall clock, so the figure is reproducible).
- feedback verdicts, given here (`feedback` entries) and received from peers (`received`
  entries holding feedback records); restricted ones as a total.
- exchanges per peer: records delivered to it (`delivered`), received from it (`received`),
  refused from it (`refused`).
- retraction propagation: for each retraction this node published in full, the time from its
  `retraction` entry to the `delivered` entry that carried its digest to each peer (the
  receiver's `received` entry lives in the receiver's log; its time differs from our
  delivery by the peer's pull latency). Median and p95 per peer, in whole seconds.
- witness coverage: peers pinned in the log (`peer.added` minus `peer.removed`) whose
  cosignature on the checkpoint verifies with the key the log recorded for them. This is the
  one figure that can grow at a fixed size (a witness can cosign later); the JSON says so.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from app.crypto.checkpoint import (
    parse_checkpoint_body,
    parse_cosignature,
    verify_cosignature,
)
from app.crypto.errors import MalformedError
from app.crypto.keys import ALG_COSIGNATURE_V1, VerifierKey
from app.crypto.note import parse_note
from app.crypto.records import record_digest
from app.errors import SignetError

__all__ = ["compute", "parse_bound", "to_html", "to_json", "to_markdown"]

REPORT_VERSION = 1


def parse_bound(text: str | None, *, end: bool = False) -> datetime | None:
    """`YYYY-MM-DD` or an RFC 3339 time, as UTC. A bare `until` date includes that day."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day.replace(hour=23, minute=59, second=59, microsecond=999999) if end else day
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError("until" if end else "since", f"{text!r} is not a date") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _time(entry: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(entry.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _counter(c: Counter[str]) -> dict[str, int]:
    return {k: c[k] for k in sorted(c)}


def _percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile on whole seconds (integers only: reproducible output)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2


class _Figures:
    def __init__(self) -> None:
        self.published_by_category: Counter[str] = Counter()
        self.published_by_type: Counter[str] = Counter()
        self.published_restricted: Counter[str] = Counter()
        self.retracted_by_category: Counter[str] = Counter()
        self.retracted_by_type: Counter[str] = Counter()
        self.retracted_restricted: Counter[str] = Counter()
        self.expired_by_category: Counter[str] = Counter()
        self.expired_by_type: Counter[str] = Counter()
        self.feedback_given: Counter[str] = Counter()
        self.feedback_received: Counter[str] = Counter()
        self.feedback_restricted = 0
        self.exchanges: dict[str, Counter[str]] = defaultdict(Counter)
        self.delays: dict[str, list[int]] = defaultdict(list)


def compute(
    origin: str,
    note: str,
    entries: Iterable[tuple[int, dict[str, Any]]],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The report over verified `entries` (index order) covered by checkpoint `note`."""
    cp = parse_checkpoint_body(parse_note(note).text)
    f = _Figures()
    signals: dict[tuple[str, str], dict[str, Any]] = {}  # (origin, id) -> record, all time
    retracted: set[tuple[str, str]] = set()
    published_in_window: list[dict[str, Any]] = []
    retractions: dict[str, tuple[datetime, str]] = {}  # digest -> (time, signal id)
    peers: dict[str, str] = {}  # origin -> verifier key, as the log last recorded it
    last_time: datetime | None = None

    def in_window(t: datetime | None) -> bool:
        return t is not None and (since is None or t >= since) and (until is None or t <= until)

    for _, entry in entries:
        kind = entry.get("kind")
        t = _time(entry)
        last_time = t or last_time
        record = entry.get("record") if isinstance(entry.get("record"), dict) else None
        tlp = str(entry.get("tlp", "restricted"))
        window = in_window(t)
        if kind in ("peer.added", "peer.changed") and isinstance(entry.get("verifier_key"), str):
            peers[str(entry.get("peer"))] = entry["verifier_key"]
        elif kind == "peer.removed":
            peers.pop(str(entry.get("peer")), None)
        if kind == "signal":
            if record is not None:
                signals[(str(record.get("origin")), str(record.get("id")))] = record
                if window:
                    published_in_window.append(record)
                    f.published_by_type[str(record.get("type"))] += 1
                    f.published_by_category.update(str(c) for c in record.get("categories") or [])
            elif window:
                f.published_restricted[tlp] += 1
        elif kind == "retraction":
            if record is not None:
                target = record.get("signal") or {}
                key = (str(target.get("origin")), str(target.get("id")))
                retracted.add(key)
                if t is not None:
                    retractions[record_digest(record).hex()] = (t, key[1])
                if window:
                    signal = signals.get(key)
                    f.retracted_by_type[str(signal.get("type")) if signal else "unknown"] += 1
                    for c in (signal or {}).get("categories") or ["unknown"]:
                        f.retracted_by_category[str(c)] += 1
            elif window:
                f.retracted_restricted[tlp] += 1
        elif kind == "feedback" and window:
            if record is not None:
                f.feedback_given[str(record.get("verdict"))] += 1
            else:
                f.feedback_restricted += 1
        elif kind == "received":
            peer = str(entry.get("from"))
            if window:
                f.exchanges[peer]["received"] += 1
                if record is not None and record.get("kind") == "feedback":
                    f.feedback_received[str(record.get("verdict"))] += 1
        elif kind == "refused" and window:
            f.exchanges[str(entry.get("from"))]["refused"] += int(entry.get("count") or 0)
        elif kind == "delivered":
            peer = str(entry.get("to"))
            if window:
                f.exchanges[peer]["delivered"] += int(entry.get("count") or 0)
            for digest in entry.get("digests") or []:
                hit = retractions.get(str(digest))
                if hit is not None and t is not None and in_window(hit[0]):
                    f.delays[peer].append(max(0, int((t - hit[0]).total_seconds())))

    as_of = last_time
    for record in published_in_window:
        key = (str(record.get("origin")), str(record.get("id")))
        valid_until = _time({"time": record.get("valid_until")})
        if key in retracted or valid_until is None or as_of is None or valid_until > as_of:
            continue
        f.expired_by_type[str(record.get("type"))] += 1
        f.expired_by_category.update(str(c) for c in record.get("categories") or [])

    return {
        "report": "signet transparency report",
        "version": REPORT_VERSION,
        "log": {"origin": cp.origin, "size": cp.size, "root": _b64(cp.root_hash)},
        "window": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "log_time_of_last_entry": as_of.isoformat() if as_of else None,
        },
        "signals": {
            "published": {
                "by_category": _counter(f.published_by_category),
                "by_type": _counter(f.published_by_type),
                "total": sum(f.published_by_type.values()),
                "restricted_by_tlp": _counter(f.published_restricted),
            },
            "retracted": {
                "by_category": _counter(f.retracted_by_category),
                "by_type": _counter(f.retracted_by_type),
                "total": sum(f.retracted_by_type.values()),
                "restricted_by_tlp": _counter(f.retracted_restricted),
            },
            "expired": {
                "by_category": _counter(f.expired_by_category),
                "by_type": _counter(f.expired_by_type),
                "total": sum(f.expired_by_type.values()),
            },
        },
        "feedback": {
            "given": _counter(f.feedback_given),
            "received": _counter(f.feedback_received),
            "restricted": f.feedback_restricted,
        },
        "exchanges": {
            peer: {k: f.exchanges[peer][k] for k in ("delivered", "received", "refused")}
            for peer in sorted(f.exchanges)
        },
        "retraction_propagation": {
            peer: {
                "count": len(v),
                "median_seconds": _median(v),
                "p95_seconds": _percentile(v, 0.95),
            }
            for peer, v in sorted(f.delays.items())
        },
        "witnesses": _witnesses(note, cp, peers),
    }


def _b64(data: bytes) -> str:
    from app.crypto._encoding import b64encode

    return b64encode(data)


def _witnesses(note: str, cp: Any, peers: dict[str, str]) -> dict[str, Any]:
    names: list[str] = []
    for sig in parse_note(note).signatures:
        vkey = peers.get(sig.name)
        if vkey is None or len(sig.signature) != 72:
            continue
        try:
            key = VerifierKey.parse(vkey)
            wkey = VerifierKey.from_public_key(
                key.origin, key.public_key, alg=ALG_COSIGNATURE_V1, any_name=True
            )
            verify_cosignature(cp, parse_cosignature(sig.line()), wkey)
        except (SignetError, ValueError):
            continue
        if sig.name not in names:
            names.append(sig.name)
    return {
        "peers": len(peers),
        "cosigned": len(names),
        "names": sorted(names),
        "note": "cosignatures on this checkpoint; a witness may still add one later",
    }


def to_json(report: dict[str, Any]) -> str:
    """Canonical text: sorted keys, two-space indent, a final newline."""
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _table(title: str, data: dict[str, int]) -> list[str]:
    if not data:
        return [f"**{title}:** none", ""]
    lines = [f"| {title} | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in data.items()]
    return [*lines, ""]


def to_markdown(report: dict[str, Any]) -> str:
    log = report["log"]
    s = report["signals"]
    out = [
        f"# Transparency report: {log['origin']}",
        "",
        f"Log size {log['size']}, root `{log['root']}`. "
        f"Window: {report['window']['since'] or 'start'} to {report['window']['until'] or 'end'}.",
        "",
    ]
    for name in ("published", "retracted", "expired"):
        out += [f"## Signals {name}: {s[name]['total']}", ""]
        out += _table("type", s[name]["by_type"]) + _table("category", s[name]["by_category"])
        if s[name].get("restricted_by_tlp"):
            out += _table("restricted (TLP)", s[name]["restricted_by_tlp"])
    fb = report["feedback"]
    out += ["## Feedback", "", *_table("given", fb["given"]), *_table("received", fb["received"])]
    out += [f"Restricted feedback entries: {fb['restricted']}", ""]
    out += [
        "## Exchanges per peer",
        "",
        "| peer | delivered | received | refused |",
        "|---|---:|---:|---:|",
    ]
    out += [
        f"| {p} | {x['delivered']} | {x['received']} | {x['refused']} |"
        for p, x in report["exchanges"].items()
    ]
    out += [
        "",
        "## Retraction propagation",
        "",
        "| peer | count | median s | p95 s |",
        "|---|---:|---:|---:|",
    ]
    out += [
        f"| {p} | {x['count']} | {x['median_seconds']} | {x['p95_seconds']} |"
        for p, x in report["retraction_propagation"].items()
    ]
    w = report["witnesses"]
    out += [
        "",
        "## Witness coverage",
        "",
        f"{w['cosigned']} of {w['peers']} peers cosigned ({', '.join(w['names']) or 'none'}).",
        "",
    ]
    return "\n".join(out)


def charts(report: dict[str, Any]) -> list[tuple[str, Markup]]:
    from app.console.charts import hbar

    s = report["signals"]
    out = [
        ("Published by category", hbar(s["published"]["by_category"], "Published by category")),
        ("Published by type", hbar(s["published"]["by_type"], "Published by type")),
        ("Retracted by category", hbar(s["retracted"]["by_category"], "Retracted by category")),
        ("Expired by type", hbar(s["expired"]["by_type"], "Expired by type")),
        ("Feedback given", hbar(report["feedback"]["given"], "Feedback given")),
        (
            "Records delivered per peer",
            hbar({p: x["delivered"] for p, x in report["exchanges"].items()}, "Delivered"),
        ),
    ]
    return out


def to_html(report: dict[str, Any]) -> str:
    """A standalone page (no scripts, no external assets) with the figures and charts."""
    body = [f"<h1>Transparency report: {escape(report['log']['origin'])}</h1>"]
    body.append(
        f"<p>Log size {report['log']['size']}, "
        f"root <code>{escape(report['log']['root'])}</code></p>"
    )
    for title, chart in charts(report):
        body.append(f"<h2>{escape(title)}</h2>{chart}")
    body.append(f"<h2>Figures</h2><pre>{escape(to_json(report))}</pre>")
    style = (
        "body{font-family:sans-serif;max-width:60rem;margin:auto}"
        ".bar{fill:#0b5cad}.label,.value{font-size:11px}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Transparency report</title><style>{style}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


# --- collecting verified entries ----------------------------------------------------------------


def collect_node(
    url: str,
    token: str,
    pinned: VerifierKey,
    *,
    http: Any = None,
) -> tuple[str, str, list[tuple[int, dict[str, Any]]]]:
    """Audit the node's whole log (raises `AuditFailed`), returning origin, the checkpoint
    note audited and every entry it covers."""
    from app.audit.client import AuditClient
    from app.audit.run import audit_node

    entries: list[tuple[int, dict[str, Any]]] = []
    report = audit_node(url, token, pinned, http=http, sink=lambda i, e: entries.append((i, e)))
    with AuditClient(url, token, http=http) as client:
        note = client.checkpoint_at(report.size)
    return report.origin, note, entries


def node_report(node: Any, *, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """The console's report: this node's own log, verified in-process against its own key
    with the same auditor code (the CLI is the independent check), then computed alike."""
    from app.audit.errors import AuditFailed
    from app.audit.verify import LogAuditor
    from app.services import log as exchange_log

    note = exchange_log.checkpoint_note(node)
    size = parse_checkpoint_body(parse_note(note).text).size
    auditor = LogAuditor(VerifierKey.parse(node.verifier_key))
    entries: list[tuple[int, dict[str, Any]]] = []
    start = 0
    while start < size:
        for e in exchange_log.entries_page(node, start, min(size, start + 1000)):
            auditor.add(e.index, e.entry, e.leaf_hash)
            entries.append((e.index, e.entry))
        start = len(entries)
    failure = auditor.finish(note).first_failure()
    if failure is not None:
        raise AuditFailed(str(failure))
    return compute(
        node.origin,
        note,
        entries,
        since=parse_bound(since),
        until=parse_bound(until, end=True),
    )
