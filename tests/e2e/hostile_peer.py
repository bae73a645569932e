"""A hostile Signet peer, as a separate process, for end-to-end tests (issue 9).

Written from the protocol documents (docs/federation.md, docs/exchange-log.md, DESIGN.md
"Identity and signatures"), not from `app/`: it imports nothing of the node. It signs with
PyNaCl directly and encodes with `rfc8785`, so what it serves is exactly what a pinned peer
that turned hostile could send: validly signed, crafted content.

    python tests/e2e/hostile_peer.py --port P --origin evil.test --seed-file F --url URL

It prints its verifier key on stdout (one line) once it listens. It serves
`GET /.well-known/signet` (a correctly signed descriptor, so an operator can pin it) and answers
the federation endpoints according to the current mode, switched at run time with the
(unsigned, test-only) `POST /_mode/<mode>`:

- `honest`    a valid page holding one good signal of ours
- `poison`    one good signal among signals with a bogus opinion, a huge confidence, an
              overflowing valid_until, an unknown category, free-text indicators, a 1 MiB attrs
- `malformed` not a page: invalid JSON, wrong shapes, a cursor that goes backwards
- `oversized` a 400 MiB page, generated lazily while it is streamed (no Content-Length)
- `drip`      one byte a second, forever, on every endpoint (never a read timeout)
- `replay`    the same page of already-delivered records, whatever `after` is asked

`GET /_stats` reports how many requests each path got (to show the node kept trying).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import rfc8785
from nacl.signing import SigningKey

MiB = 1024 * 1024


class Identity:
    """An Ed25519 key and the C2SP signed-note verifier key of `origin` (DESIGN.md)."""

    def __init__(self, origin: str, seed: bytes) -> None:
        self.origin = origin
        self.key = SigningKey(seed)
        public = bytes(self.key.verify_key)
        key_hash = hashlib.sha256(origin.encode() + b"\n" + b"\x01" + public).digest()[:4]
        self.key_id = key_hash.hex()
        encoded = base64.b64encode(b"\x01" + public).decode()
        self.verifier_key = f"{origin}+{self.key_id}+{encoded}"

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """A signed record: Ed25519 over the RFC 8785 bytes of the object without `signature`."""
        record = {**body, "origin": self.origin, "key_id": self.key_id}
        sig = self.key.sign(rfc8785.dumps(record)).signature
        return {**record, "signature": base64.b64encode(sig).decode()}

    def checkpoint(self, size: int) -> str:
        """A tlog-checkpoint note: origin, size, base64 root hash, then a signature line."""
        text = f"{self.origin}\n{size}\n{base64.b64encode(bytes(32)).decode()}\n"
        key_hash = bytes.fromhex(self.key_id)
        sig = self.key.sign(text.encode()).signature
        return text + f"\n— {self.origin} {base64.b64encode(key_hash + sig).decode()}\n"


def signal(ident: Identity, n: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "signal",
        "v": 1,
        "id": f"01evil{n:020d}",
        "version": 1,
        "type": "md5",
        "value": f"{0xE0000000 + n:032x}",
        "attrs": {},
        "categories": ["csam"],
        "indicators": [],
        "opinion": "positive",
        "confidence": 50,
        "reviewed": False,
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2030-01-01T00:00:00Z",
        "audience": {"tlp": "green", "peers": [], "hops": 1},
    }
    body.update(fields)
    return ident.sign(body)


POISON: list[dict[str, Any]] = [
    {"opinion": "bogus"},
    {"confidence": 2**40},
    {"valid_until": "9999-12-31T23:59:59-05:00"},
    {"categories": ["made_up_category"]},
    {"indicators": ["he asked to meet at the park after school"]},
    {"attrs": {"blob": "x" * MiB}},
]


class State:
    def __init__(self, ident: Identity, url: str) -> None:
        self.ident = ident
        self.url = url
        self.mode = "honest"
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    def hit(self, path: str) -> None:
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1


def page(records: list[dict[str, Any]], after: int, nxt: int, ident: Identity) -> bytes:
    body = {
        "records": [{"hops": 1, "record": r} for r in records],
        "next": nxt,
        "checkpoint": ident.checkpoint(max(nxt, 1)),
        "has_more": False,
    }
    return json.dumps(body).encode()


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body may end at connection close

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drip(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                return  # the node hung up: what it should do

        def _oversized(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            head = b'{"records":[],"next":1,"has_more":false,"checkpoint":"'
            chunk = b"x" * MiB
            try:
                self.wfile.write(head)
                for _ in range(400):  # 400 MiB, never held in memory here
                    self.wfile.write(chunk)
                self.wfile.write(b'"}')
            except OSError:
                return

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            state.hit(parts.path)
            if parts.path == "/.well-known/signet":
                descriptor = state.ident.sign(
                    {
                        "kind": "node",
                        "v": 1,
                        "protocol": "signet/1",
                        "software": "hostile/0",
                        "verifier_key": state.ident.verifier_key,
                        "url": state.url,
                        "endpoints": {
                            "records": "/federation/v1/records",
                            "notify": "/federation/v1/notify",
                            "witness": "/federation/v1/witness/add-checkpoint",
                            "checkpoint": "/v1/log/checkpoint",
                        },
                    }
                )
                self._send(200, json.dumps(descriptor).encode())
                return
            if parts.path == "/_stats":
                self._send(200, json.dumps({"mode": state.mode, "hits": state.hits}).encode())
                return
            if parts.path != "/federation/v1/records":
                self._send(404, b"{}")
                return
            after = int(parse_qs(parts.query).get("after", ["0"])[0])
            mode = state.mode
            ident = state.ident
            if mode == "drip":
                self._drip()
            elif mode == "oversized":
                self._oversized()
            elif mode == "malformed":
                bad = [b"{not json", b"[]", b'{"records": 5, "next": "x"}']
                body = bad[state.hits[parts.path] % len(bad)]
                if after > 0:  # and a cursor that goes backwards
                    body = page([signal(ident, 1)], after, after - 1, ident)
                self._send(200, body)
            elif mode == "poison":
                records = [signal(ident, 10 + i, **f) for i, f in enumerate(POISON)]
                records.insert(3, signal(ident, 2))
                self._send(200, page(records, after, after + len(records), ident))
            elif mode == "replay":
                # The first honest page again, with a cursor that moves on so it looks new.
                self._send(200, page([signal(ident, 1)], after, after + 1, ident))
            else:  # honest
                records = [signal(ident, 1)] if after == 0 else []
                self._send(200, page(records, after, max(after, 1), ident))

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            state.hit(parts.path)
            if parts.path.startswith("/_mode/"):
                state.mode = parts.path.rsplit("/", 1)[1]
                self._send(200, b"{}")
                return
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, 1 * MiB))
            if state.mode == "drip":
                self._drip()
            elif state.mode == "oversized":
                self._oversized()
            else:
                self._send(202, b"")

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--origin", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--seed", default="11" * 32, help="hex Ed25519 seed")
    ap.add_argument("--mode", default="honest")
    args = ap.parse_args()
    state = State(Identity(args.origin, bytes.fromhex(args.seed)), args.url)
    state.mode = args.mode
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    print(state.ident.verifier_key, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
