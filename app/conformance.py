"""`signet conformance`: a black-box check of any node against spec/signet-1.md, over HTTP.

It acts as a stranger (no credentials), an auditor (`--token` with scope `audit`) and, given a
key file and the origin the node pinned it under, a peer (`--as-peer`, `--as-origin`). Each
check names the requirement it tests (§13 of the spec); a check whose credentials were not
given is `n/a`. Nothing here trusts the node: signatures, hashes, roots, proofs and canonical
forms are all recomputed. Read-only: it never writes to the node (a peer pull logs a
`delivered` entry on the node only if it delivers something new, as any peer's would).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from app.crypto import merkle
from app.crypto.canonical import canonical_json
from app.crypto.checkpoint import open_checkpoint
from app.crypto.keys import NodeKey, VerifierKey
from app.crypto.records import record_digest, verify_record
from app.errors import SignetError
from app.federation.httpsig import sign_request
from app.federation.pages import RecordsPage

MAX_ENTRIES = 20_000  # entries fetched and re-hashed at most (the newest are checked first)
CURSOR_STEP = 3  # records per page when walking the cursor
CURSOR_PAGES = 30  # pages walked at most
# A received signal whose validity ended this long ago must have its expiry receipt: nodes
# mark expiries on a timer (SIGNET_EXPIRE_INTERVAL, 60 s by default).
EXPIRY_GRACE_SECONDS = 300


@dataclass
class Check:
    section: str
    requirement: str
    name: str
    status: str  # pass | fail | n/a
    detail: str = ""


@dataclass
class Report:
    url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "checks": [c.__dict__ for c in self.checks],
        }


class _Fail(Exception):
    pass


def _require(cond: bool, detail: str) -> None:
    if not cond:
        raise _Fail(detail)


@dataclass
class Conformance:
    url: str
    key: VerifierKey
    token: str | None = None
    peer_key: NodeKey | None = None
    peer_origin: str | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=20.0))
    report: Report = field(init=False)
    _descriptor: dict[str, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.report = Report(self.url)

    # --- running ---------------------------------------------------------------------------

    def run(self) -> Report:
        for section, req, name, check, needs in self._checks():
            if needs is not None and not needs:
                self.report.checks.append(Check(section, req, name, "n/a", "credentials not given"))
                continue
            try:
                detail = check() or ""
                self.report.checks.append(Check(section, req, name, "pass", detail))
            except _Fail as exc:
                self.report.checks.append(Check(section, req, name, "fail", str(exc)[:500]))
            except (SignetError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                detail = f"{type(exc).__name__}: {exc}"[:500]
                self.report.checks.append(Check(section, req, name, "fail", detail))
        return self.report

    def _checks(self) -> Iterator[tuple[str, str, str, Callable[[], str | None], bool | None]]:
        audit = self.token is not None
        peer = self.peer_key is not None and self.peer_origin is not None
        yield (
            "2 identity",
            "ID-4 REC-1",
            "descriptor is signed by the pinned key",
            self.descriptor,
            None,
        )
        yield "11 errors", "ERR-1", "errors are problem+json", self.errors, None
        yield (
            "8 http signatures",
            "HTTP-2 HTTP-3",
            "unsigned or forged requests get one refusal",
            self.refusals,
            None,
        )
        yield "6 log", "LOG-4 LOG-5", "checkpoint signed; entries hash to its root", self.log, audit
        yield "6 log", "LOG-5", "inclusion and consistency proofs verify", self.proofs, audit
        yield (
            "3 records",
            "REC-1",
            "every record of this origin in the log verifies",
            self.log_records,
            audit,
        )
        yield (
            "4 signals",
            "SIG-1 SIG-2",
            "signals in the log are in canonical form",
            self.canonical,
            audit,
        )
        yield "6 log", "LOG-3", "restricted entries carry only a commitment", self.restricted, audit
        yield (
            "6 log",
            "LOG-6",
            "every withdrawal applied from a peer has an `applied` receipt",
            self.receipts,
            audit,
        )
        yield (
            "7 sync",
            "SYNC-1 AUD-1 AUD-2",
            "a page has the specified shape and audience",
            self.sync_page,
            peer,
        )
        yield (
            "7 sync",
            "SYNC-1",
            "the cursor moves forward and pages are stable",
            self.sync_cursor,
            peer,
        )
        yield "8 http signatures", "HTTP-2", "a replayed request is refused", self.replay, peer
        yield (
            "8 http signatures",
            "HTTP-2",
            "requests outside the time window are refused",
            self.skew,
            peer,
        )
        yield (
            "7 sync",
            "SYNC-4",
            "notify: accepted from the signer, refused naming another origin",
            self.notify,
            peer,
        )

    # --- helpers ---------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _get_json(self, path: str, **params: Any) -> Any:
        r = self.http.get(self.url + path, params=params, headers=self._auth())
        _require(r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:200]}")
        return r.json()

    def _checkpoint(self) -> tuple[int, bytes]:
        r = self.http.get(self.url + "/v1/log/checkpoint", headers=self._auth())
        _require(r.status_code == 200, f"checkpoint: {r.status_code}")
        cp = open_checkpoint(r.text, self.key)
        return cp.size, bytes(cp.root_hash)

    def _entries(self, size: int) -> list[dict[str, Any]]:
        start = max(0, size - MAX_ENTRIES)
        out: list[dict[str, Any]] = []
        while start + len(out) < size:
            page = self._get_json("/v1/log/entries", start=start + len(out), end=size)
            _require(isinstance(page, list) and bool(page), "entries page empty before the log end")
            out += page
        return out

    def _signed(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        nonce: str | None = None,
        created: int | None = None,
        expires_in: int = 60,
    ) -> tuple[dict[str, str], str]:
        assert self.peer_key is not None and self.peer_origin is not None
        url = self.url + path
        headers = sign_request(
            method,
            url,
            {},
            body,
            keyid=self.peer_origin,
            sign=self.peer_key.sign,
            created=int(time.time()) if created is None else created,
            expires_in=expires_in,
            nonce=nonce,
        )
        return headers, url

    def _pull(self, after: int, limit: int = 100) -> RecordsPage:
        headers, url = self._signed("GET", f"/federation/v1/records?after={after}&limit={limit}")
        r = self.http.get(url, headers=headers)
        _require(r.status_code == 200, f"pull after={after}: {r.status_code} {r.text[:200]}")
        return RecordsPage.from_json(r.content)

    # --- checks ----------------------------------------------------------------------------

    def descriptor(self) -> str:
        r = self.http.get(self.url + "/.well-known/signet")
        _require(r.status_code == 200, f"/.well-known/signet answered {r.status_code}")
        body = r.json()
        verify_record(body, lambda origin: self.key if origin == self.key.origin else None)
        _require(body.get("kind") == "node", "descriptor kind is not `node`")
        _require(body.get("protocol") == "signet/1", f"protocol {body.get('protocol')!r}")
        _require(body.get("verifier_key") == str(self.key), "descriptor names another key")
        for name in ("records", "notify", "witness", "checkpoint"):
            _require(name in body.get("endpoints", {}), f"endpoint {name} missing")
        self._descriptor = body
        return f"{body['origin']} {body.get('software', '')}"

    def errors(self) -> str:
        r = self.http.get(
            self.url + "/v1/log/entries",
            params={"start": -1, "end": 1},
            headers=self._auth() if self.token else {},
        )
        _require(r.status_code in (400, 401, 403, 422), f"bad range answered {r.status_code}")
        _require(
            r.headers.get("content-type", "").startswith("application/problem+json"),
            f"content-type {r.headers.get('content-type')!r}",
        )
        doc = r.json()
        for key in ("type", "title", "status", "detail"):
            _require(key in doc, f"problem document lacks `{key}`")
        _require(doc["status"] == r.status_code, "problem status differs from the HTTP status")
        return f"{r.status_code} {doc['type']}"

    def refusals(self) -> str:
        path = "/federation/v1/records?after=0&limit=1"
        answers = []
        unsigned = self.http.get(self.url + path)
        answers.append(("unsigned", unsigned))
        stranger = NodeKey.generate()
        # An unknown keyid, and a pinned peer's keyid (or, without one, this node's own origin)
        # with a signature by the wrong key: a stranger must not be able to tell them apart.
        known = self.peer_origin or self.key.origin
        for keyid in (f"stranger-{secrets.token_hex(4)}.example", known):
            headers = sign_request(
                "GET",
                self.url + path,
                {},
                b"",
                keyid=keyid,
                sign=stranger.sign,
                created=int(time.time()),
                expires_in=60,
            )
            answers.append((keyid, self.http.get(self.url + path, headers=headers)))
        for what, r in answers:
            _require(r.status_code in (401, 403), f"{what}: answered {r.status_code}")
            _require(
                r.headers.get("content-type", "").startswith("application/problem+json"),
                f"{what}: not a problem document",
            )
        forged = [
            (r.status_code, r.json().get("type"), r.json().get("detail")) for _, r in answers[1:]
        ]
        _require(
            forged[0] == forged[1],
            f"an unknown keyid and a known keyid with a bad signature are told apart: {forged}",
        )
        return f"{forged[0][0]}"

    def log(self) -> str:
        size, root = self._checkpoint()
        entries = self._entries(size)
        leaves = []
        for item in entries:
            data = canonical_json(item["entry"])
            leaves.append(merkle.leaf_hash(data))
        if len(entries) == size:
            _require(
                merkle.root_from_leaves(leaves) == root,
                "the entries do not hash to the checkpoint's root",
            )
        return f"size {size}, {len(entries)} entries re-hashed"

    def proofs(self) -> str:
        size, root = self._checkpoint()
        if size == 0:
            return "empty log"
        for index in sorted({0, size // 2, size - 1}):
            entry = self._get_json("/v1/log/entries", start=index, end=index + 1)[0]
            leaf = merkle.leaf_hash(canonical_json(entry["entry"]))
            proof = self._get_json("/v1/log/proof/inclusion", index=index, size=size)
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            merkle.verify_inclusion(leaf, index, size, hashes, root)
        if size >= 2:
            old = size // 2
            r = self.http.get(
                self.url + "/v1/log/checkpoint", params={"size": old}, headers=self._auth()
            )
            if r.status_code == 200:
                old_root = bytes(open_checkpoint(r.text, self.key).root_hash)
                proof = self._get_json("/v1/log/proof/consistency", **{"from": old, "to": size})
                hashes = [base64.b64decode(h) for h in proof["hashes"]]
                merkle.verify_consistency(old, size, hashes, old_root, root)
        return f"at size {size}"

    def _records_in_log(self) -> Iterator[tuple[int, dict[str, Any]]]:
        size, _ = self._checkpoint()
        for item in self._entries(size):
            record = item["entry"].get("record")
            if isinstance(record, dict) and record.get("origin") == self.key.origin:
                yield item["index"], record

    def log_records(self) -> str:
        n = 0
        for index, record in self._records_in_log():
            if record.get("kind") == "key.rotation":
                continue
            try:
                verify_record(record, lambda o: self.key if o == self.key.origin else None)
            except SignetError as exc:
                if record.get("key_id") != self.key.key_id:
                    continue  # signed under a retired key: the rotation chain covers it
                raise _Fail(f"entry {index}: {exc}") from None
            n += 1
        return f"{n} record(s) verified"

    def canonical(self) -> str:
        from app.signals.types import canonicalize

        n = 0
        for index, record in self._records_in_log():
            if record.get("kind") != "signal":
                continue
            attrs = record.get("attrs") or {}
            kwargs: dict[str, Any] = {"allow_low_quality": True}
            if record["type"] in ("pdq",):
                kwargs["quality"] = attrs.get("quality")
            if record["type"] in ("email", "phone", "username", "payment"):
                kwargs["key_id"] = attrs.get("key_id")
            if record["type"] == "url":
                kwargs["domain"] = attrs.get("domain")
            try:
                canon = canonicalize(record["type"], record["value"], **kwargs)
            except SignetError as exc:
                raise _Fail(f"entry {index}: {record['type']} value refused: {exc}") from None
            _require(
                canon.value == record["value"],
                f"entry {index}: {record['type']} value {record['value'][:40]!r} is not "
                f"canonical (expected {canon.value[:40]!r})",
            )
            cats = record.get("categories", [])
            _require(
                cats == sorted(set(cats)) and cats, f"entry {index}: categories not sorted/unique"
            )
            n += 1
        return f"{n} signal(s) canonical"

    def restricted(self) -> str:
        size, _ = self._checkpoint()
        n = 0
        for item in self._entries(size):
            entry = item["entry"]
            if entry.get("tlp") in ("red", "amber"):
                _require(
                    "record" not in entry, f"entry {item['index']}: restricted entry has a record"
                )
                _require(
                    isinstance(entry.get("commitment"), str),
                    f"entry {item['index']}: no commitment",
                )
                n += 1
            record = entry.get("record")
            if isinstance(record, dict):
                tlp = (record.get("audience") or {}).get("tlp")
                _require(
                    tlp not in ("red", "amber"),
                    f"entry {item['index']}: a {tlp} record in clear in the log",
                )
        return f"{n} restricted entr(y/ies)"

    def receipts(self) -> str:
        """LOG-6: every open `received` retraction is followed by an `applied` receipt naming
        its digest, and every open received signal whose validity ended (more than
        EXPIRY_GRACE_SECONDS ago, never renewed or retracted) has an expiry receipt."""
        size, _ = self._checkpoint()
        entries = self._entries(size)
        retractions: dict[str, int] = {}  # digest -> index of the received retraction
        signals: dict[tuple[str, str], tuple[int, int, str]] = {}  # -> (version, index, until)
        withdrawn: set[tuple[str, str]] = set()
        receipts: set[str] = set()
        expiries: set[tuple[str, str]] = set()
        for item in entries:
            entry = item["entry"]
            kind, record = entry.get("kind"), entry.get("record")
            if kind == "received" and isinstance(record, dict):
                if record.get("kind") == "retraction" and isinstance(record.get("signal"), dict):
                    digest = record_digest(record).hex()
                    retractions[digest] = item["index"]
                    ref = record["signal"]
                    withdrawn.add((str(ref.get("origin")), str(ref.get("id"))))
                elif record.get("kind") == "signal":
                    key = (str(record.get("origin")), str(record.get("id")))
                    version = record.get("version", 1)
                    if key not in signals or version > signals[key][0]:
                        signals[key] = (version, item["index"], str(record.get("valid_until")))
            elif kind == "applied" and "commitment" not in entry:
                ref = entry.get("signal") or {}
                if entry.get("action") == "retraction":
                    receipts.add(str(entry.get("digest")))
                elif entry.get("action") == "expiry":
                    expiries.add((str(ref.get("origin")), str(ref.get("id"))))
        for digest, index in retractions.items():
            _require(
                digest in receipts,
                f"entry {index}: a retraction received from a peer has no `applied` receipt",
            )
        now = time.time()
        due = 0
        for key, (_, index, until) in signals.items():
            if key in withdrawn:
                continue
            try:
                ended = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if ended < now - EXPIRY_GRACE_SECONDS:
                due += 1
                _require(
                    key in expiries,
                    f"entry {index}: signal {key[0]}/{key[1]} expired at {until} and has no "
                    "`applied` expiry receipt",
                )
        return f"{len(retractions)} retraction(s), {due} expiry(ies) with receipts"

    def sync_page(self) -> str:
        page = self._pull(0)
        n = 0
        for env in page.records:
            rec = env.record
            audience = rec.get("audience") or {}
            tlp = audience.get("tlp")
            _require(tlp != "red", "a red record was served to a peer")
            if tlp == "amber":
                _require(rec.get("origin") == self.key.origin, "an amber record was relayed")
                _require(self.peer_origin in audience.get("peers", []), "amber record not for us")
            if rec.get("origin") == self.key.origin:
                _require(env.hops == 1, f"own record sent with hops={env.hops}")
                verify_record(rec, lambda o: self.key)
            else:
                _require(env.hops >= 2, f"relayed record with hops={env.hops}")
            if rec.get("kind") == "signal":
                limit = audience.get("hops")
                _require(
                    not isinstance(limit, int) or env.hops - 1 <= limit,
                    f"a record with audience.hops={limit} sent with hops={env.hops} (AUD-4)",
                )
                _require(
                    self.peer_origin not in audience.get("exclude", []),
                    "a record whose audience excludes us was sent to us (AUD-7)",
                )
                peers = audience.get("peers") or []
                _require(
                    not peers or self.peer_origin in peers,
                    "a record for named peers, not including us, was sent to us (AUD-3)",
                )
            _require(rec.get("origin") != self.peer_origin, "our own record was sent back (AUD-5)")
            n += 1
        open_checkpoint(page.checkpoint, self.key)
        return f"{n} record(s), next={page.next}"

    def sync_cursor(self) -> str:
        """Walk the feed in small pages and compare it with one large page: the cursor only
        moves forward, moves past every record it served, and the walk neither repeats nor
        skips a record (SYNC-1)."""
        first = self._pull(0, limit=CURSOR_STEP)
        _require(first.next >= 0, "negative cursor")
        again = self._pull(0, limit=CURSOR_STEP)
        ids = [canonical_json(e.record) for e in first.records]
        ids2 = [canonical_json(e.record) for e in again.records]
        _require(ids2[: len(ids)] == ids, "the same request gave other records (unstable page)")
        walked: list[bytes] = []
        page, after = first, 0
        for _ in range(CURSOR_PAGES):
            _require(
                page.next >= after, f"the cursor went backwards: after={after}, next={page.next}"
            )
            if page.records:
                _require(page.next > after, f"a page of records left the cursor at {after}")
            batch = [canonical_json(e.record) for e in page.records]
            _require(
                not set(batch) & set(walked),
                f"the page after={after} repeats records of an earlier page",
            )
            walked += batch
            if not page.has_more:
                break
            after = page.next
            page = self._pull(after, limit=CURSOR_STEP)
        whole = self._pull(0, limit=len(walked) + 1)
        seen = [canonical_json(e.record) for e in whole.records][: len(walked)]
        _require(
            seen == walked,
            f"walking the cursor gave {len(walked)} record(s) that differ from one page of the "
            "same span (records skipped or reordered)",
        )
        return f"{len(walked)} record(s) walked in pages of {CURSOR_STEP}, next={page.next}"

    def replay(self) -> str:
        path = "/federation/v1/records?after=0&limit=1"
        headers, url = self._signed("GET", path)
        first = self.http.get(url, headers=headers)
        _require(first.status_code == 200, f"first request answered {first.status_code}")
        second = self.http.get(url, headers=headers)
        _require(second.status_code in (401, 403), f"replay answered {second.status_code}")
        stale_headers, _ = self._signed("GET", path, created=int(time.time()) - 3600)
        stale = self.http.get(url, headers=stale_headers)
        _require(
            stale.status_code in (401, 403), f"a request an hour old answered {stale.status_code}"
        )
        return "replay and stale refused"

    def skew(self) -> str:
        """A request created an hour in the future, or expired a minute ago, is refused."""
        path = "/federation/v1/records?after=0&limit=1"
        future, url = self._signed("GET", path, created=int(time.time()) + 3600)
        r = self.http.get(url, headers=future)
        _require(r.status_code in (401, 403), f"a request from the future answered {r.status_code}")
        # Created within the window but past its own `expires`.
        headers, _ = self._signed("GET", path, created=int(time.time()) - 120, expires_in=30)
        r = self.http.get(url, headers=headers)
        _require(r.status_code in (401, 403), f"an expired request answered {r.status_code}")
        return "future-dated and expired requests refused"

    def notify(self) -> str:
        """SYNC-4: a notify from the signer is accepted (202; the node may pull from us), one
        naming another origin is refused with a problem document."""
        note = f"{self.peer_origin}\n0\n{base64.b64encode(bytes(32)).decode()}\n"
        good = json.dumps({"origin": self.peer_origin, "size": 0, "checkpoint": note}).encode()
        headers, url = self._signed("POST", "/federation/v1/notify", good)
        r = self.http.post(url, headers=headers, content=good)
        _require(r.status_code == 202, f"a notify from the signer answered {r.status_code}")
        other = "someone-else.example"
        bad_note = note.replace(str(self.peer_origin), other, 1)
        bad = json.dumps({"origin": other, "size": 0, "checkpoint": bad_note}).encode()
        headers, url = self._signed("POST", "/federation/v1/notify", bad)
        r = self.http.post(url, headers=headers, content=bad)
        _require(
            400 <= r.status_code < 500, f"a notify naming another origin answered {r.status_code}"
        )
        _require(
            r.headers.get("content-type", "").startswith("application/problem+json"),
            "the refusal is not a problem document",
        )
        return f"202, then {r.status_code}"


def run(
    url: str,
    key: str,
    *,
    token: str | None = None,
    peer_key: NodeKey | None = None,
    peer_origin: str | None = None,
) -> Report:
    checker = Conformance(url, VerifierKey.parse(key), token, peer_key, peer_origin)
    try:
        return checker.run()
    finally:
        checker.http.close()


def render(report: Report) -> str:
    lines = []
    for c in report.checks:
        lines.append(
            f"{c.status:4}  §{c.section:18} {c.requirement:22} {c.name}"
            + (f"  -- {c.detail}" if c.detail else "")
        )
    failed = sum(c.status == "fail" for c in report.checks)
    lines.append(
        f"{'FAILED' if failed else 'OK'}: {failed} failed, "
        f"{sum(c.status == 'pass' for c in report.checks)} passed, "
        f"{sum(c.status == 'n/a' for c in report.checks)} n/a"
    )
    return "\n".join(lines)


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2)


def command(
    url: str,
    key: str,
    token: str | None,
    as_peer: str | None,
    as_origin: str | None,
    as_json: bool,
) -> int:
    """The body of `signet conformance` (see app/cli.py): returns the exit status."""
    from pathlib import Path

    peer_key = NodeKey.load(Path(as_peer)) if as_peer else None
    if (as_peer is None) != (as_origin is None):
        raise ValueError("--as-peer and --as-origin go together")
    report = run(url, key, token=token, peer_key=peer_key, peer_origin=as_origin)
    print(to_json(report) if as_json else render(report))
    return 0 if report.ok else 1
