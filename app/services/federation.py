"""The federation at run time: authenticating peers, pulling, pushing, and the loops.

One `Federation` per node process (created by the app's lifespan, or by a CLI verb):

- `authenticate(...)` checks an inbound RFC 9421 signature against the pinned key of a
  *current* peer (keyid = origin), with `settings.clock_skew` and a nonce cache kept in the
  database (so every worker shares it) behind an in-memory front. Refusals raise a
  `RequestRefused`: one 401 problem+json whatever the reason, so a stranger cannot tell an
  unknown keyid from a pinned one. The real reason is logged (python logging: keyid, reason, never
  a secret) and counted in the metrics. They are not exchange-log entries: an unauthenticated
  party could otherwise fill our log.
- `pull(peer)` pulls pages until the peer has no more, applying each (services/sync.py).
- `changed()` is the after-commit hook: a push thread notifies every peer (signed
  `POST /federation/v1/notify`) when signals or feedback changed, so they pull at once.
- a sync loop per peer pulls every `settings.sync_interval` seconds (with jitter), backing off
  exponentially after failures; a notify from that peer wakes it at once. Only the process
  holding the node's "pull" lease (services/lease.py, a row in the shared database) runs these
  loops, so a node with many workers and hosts pulls each peer once; when the holder dies,
  another process takes the lease within about `settings.lease_ttl` seconds and starts them.
- after publishing a checkpoint, asks each peer to cosign it (services/witness.py).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import Session

from app.crypto.keys import VerifierKey
from app.errors import FederationError, SignetError
from app.federation.client import PeerClient
from app.federation.errors import BadSignature, NonceCacheFull, SignatureRefused
from app.federation.httpsig import MemoryNonceCache, verify_request
from app.federation.pages import Notify
from app.services import log as exchange_log
from app.services import rekey, sync
from app.services.duties import PeerTasks
from app.services.lease import Lease
from app.services.node import Node
from app.services.peer_limits import PeerRateLimited, PeerRequestLimiter
from app.storage import peers as store
from app.storage.models import FeedbackRow, PeerRow, SignalRow
from app.storage.types import utcnow


class RequestRefused(SignatureRefused):
    """The one answer to any inter-node request that does not verify, whatever the reason.

    Same status and text for a malformed header, an unknown keyid, a removed peer, a bad
    signature, a stale or replayed request or a swapped body; the reason is logged here.
    """

    status = 401

    def __init__(self) -> None:
        super().__init__(
            "request refused: it does not carry a current, valid signature by a peer of this "
            "node (RFC 9421); the node's operator can see why in its log"
        )


log = logging.getLogger("signet.federation")

MAX_BACKOFF = 300.0
_PULL_PAGES_PER_ROUND = 10_000


class DbNonceCache:
    """`NonceCache` shared by every worker through the database, with a memory front that
    answers repeats seen by this process without a query."""

    def __init__(self, node: Node, window: int) -> None:
        self.node = node
        self.memory = MemoryNonceCache(window)

    def check_and_store(self, keyid: str, nonce: str, expires_at: int) -> bool:
        if not self.memory.check_and_store(keyid, nonce, expires_at):
            return False
        # Its own short transaction, without the sequencer lock: a nonce is not a log change.
        with Session(self.node.db.engine) as session:
            ok = store.store_nonce(session, keyid, nonce, expires_at)
            session.commit()
        return ok

    def purge(self) -> int:
        with Session(self.node.db.engine) as session:
            n = store.purge_nonces(session, int(time.time()))
            session.commit()
        return n


@dataclass
class PullResult:
    peer: str
    pages: int = 0
    applied: int = 0
    duplicate: int = 0
    refused: int = 0
    cursor: int = 0
    error: str | None = None


class _StatusCollector(Collector):
    """Per-peer figures read from the database at scrape time, so every worker agrees."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Any:
        lag = GaugeMetricFamily(
            "signet_peer_lag_entries", "Peer log entries not yet pulled.", labels=["peer"]
        )
        success = GaugeMetricFamily(
            "signet_peer_last_success_timestamp_seconds",
            "Time of the last successful pull from the peer.",
            labels=["peer"],
        )
        cursor = GaugeMetricFamily(
            "signet_peer_cursor", "Position in the peer's log pulled up to.", labels=["peer"]
        )
        received = CounterMetricFamily(
            "signet_peer_records_received", "Records received from the peer.", labels=["peer"]
        )
        refused = CounterMetricFamily(
            "signet_peer_records_refused", "Records from the peer refused.", labels=["peer"]
        )
        delivered = CounterMetricFamily(
            "signet_peer_records_delivered", "Records delivered to the peer.", labels=["peer"]
        )
        with self.node.db.read() as session:
            rows = store.list_peers(session)
        for r in rows:
            lag.add_metric([r.origin], max(0, r.remote_size - r.cursor))
            cursor.add_metric([r.origin], r.cursor)
            if r.last_success is not None:
                success.add_metric([r.origin], r.last_success.timestamp())
            received.add_metric([r.origin], r.records_received)
            refused.add_metric([r.origin], r.records_refused)
            delivered.add_metric([r.origin], r.records_delivered)
        yield from (lag, success, cursor, received, refused, delivered)


class Federation:
    def __init__(
        self,
        node: Node,
        *,
        clients: Mapping[str, httpx.Client] | None = None,
        page_size: int = sync.DEFAULT_PAGE,
    ) -> None:
        self.node = node
        settings = node.settings
        self.client = PeerClient(
            node.origin,
            node.key.sign,
            clients=clients,
            timeout=settings.peer_io_timeout,
            deadline=settings.peer_deadline,
            max_page_bytes=settings.max_page_bytes,
        )
        self.nonces = DbNonceCache(node, node.settings.clock_skew + 300)
        self.page_size = page_size
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(node))
        self.refusals = Counter(
            "signet_federation_refusals",
            "Inbound federation requests refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._stop = threading.Event()
        self._push = threading.Event()
        self._wake: dict[str, threading.Event] = {}
        self._loops: dict[str, threading.Thread] = {}
        self._pull_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_pushed: tuple[int, int] | None = None
        self._notify_tasks = PeerTasks("notify")
        self.limiter = PeerRequestLimiter(settings.peer_requests_per_minute)
        self.lease = Lease(node.db, "pull", ttl=node.settings.lease_ttl)
        self._resupervise = threading.Event()
        self.key_follower = rekey.Follower(node, self.client.descriptor)

    # --- inbound -------------------------------------------------------------------------------

    def authenticate(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> str:
        """The origin of the current peer that signed this request; raises SignatureRefused."""

        resolved: list[str] = []  # the current peer the request claims to come from

        def resolve(keyid: str) -> Any:
            with self.node.db.read() as session:
                row = store.get_peer(session, keyid)
            if row is None:
                return None
            resolved.append(keyid)
            return VerifierKey.parse(row.verifier_key).verify

        try:
            verified = verify_request(
                method,
                url,
                headers,
                body,
                resolve_key=resolve,
                now=int(time.time()),
                max_skew=self.node.settings.clock_skew,
                nonce_cache=self.nonces,
            )
        except NonceCacheFull:
            raise  # our own capacity, not the request's fault: 503 and a retry may succeed
        except SignatureRefused as exc:
            self.refusals.labels(type(exc).__name__).inc()
            log.warning("refused federation request %s %s: %s", method, _path(url), exc)
            if isinstance(exc, BadSignature) and resolved:
                # A current peer signing with a key we did not pin: maybe it rotated.
                self.key_follower.request_failed(resolved[0], str(exc))
            # The caller learns nothing about why: an unknown keyid and a pinned keyid with a
            # bad signature must look alike, or strangers can list our peers.
            raise RequestRefused() from None
        try:
            self.limiter.take(verified.keyid)
        except PeerRateLimited as exc:
            self.refusals.labels(type(exc).__name__).inc()
            log.warning("refused federation request %s %s: %s", method, _path(url), exc)
            raise
        return verified.keyid

    def on_notify(self, peer: str, notify: Notify) -> None:
        if notify.origin != peer:
            raise FederationError(f"notify names {notify.origin}, signed by {peer}")
        with self.node.db.write() as session:
            row = store.get_peer(session, peer)
            if row is not None and notify.size > row.remote_size:
                row.remote_size = notify.size
                session.add(row)
        self.wake(peer)

    # --- pulling -------------------------------------------------------------------------------

    def wake(self, peer: str) -> None:
        with self._lock:
            event = self._wake.get(peer)
            if event is None and self._threads and not self._stop.is_set() and self.lease.held:
                # A peer added moments ago (its loop starts at the next supervisor round).
                event = self._start_loop(peer)
        if event is not None:
            event.set()
        else:
            # No loops running (CLI or tests): pull now on a short-lived thread.
            threading.Thread(target=self.pull, args=(peer,), daemon=True).start()

    def _start_loop(self, peer: str) -> threading.Event:
        """Start `peer`'s pull loop; call with `_lock` held."""
        event = self._wake[peer] = threading.Event()
        t = threading.Thread(target=self._peer_loop, args=(peer,), name=f"sync-{peer}", daemon=True)
        self._loops[peer] = t
        t.start()
        return event

    def pull(self, peer: str) -> PullResult:
        """Pull from `peer` until it has nothing more; never raises for peer trouble."""
        with self._lock:
            lock = self._pull_locks.setdefault(peer, threading.Lock())
        result = PullResult(peer)
        with lock:
            try:
                self._pull(peer, result)
            except Exception as exc:  # any failure is the peer's status, never a dead loop
                result.error = f"{type(exc).__name__}: {exc}"[:500]
                self._record_failure(peer, result.error)
                if isinstance(exc, SignetError | ValueError):
                    log.warning("pull from %s failed: %s", peer, result.error)
                else:
                    log.exception("pull from %s failed unexpectedly", peer)
        return result

    def _pull(self, peer: str, result: PullResult) -> None:
        # One write to start the round, not one per page: each page's own transaction moves
        # the cursor and stamps last_attempt (sync.apply_page), and the key ids the peer's
        # records may name are read once a round, again only after following a rotation.
        with self.node.db.write() as session:
            row = self._peer_row(session, peer)
            row.last_attempt = utcnow()
            session.add(row)
            url, after = row.url, row.cursor
            known_keys = rekey.known_key_ids(session, peer)
        for _ in range(_PULL_PAGES_PER_ROUND):
            page = self.client.pull(url, after, self.page_size)
            if rekey.key_ids_of(peer, (e.record for e in page.records)) - known_keys:
                # The peer's own records under a key we never pinned: a rotation to follow
                # (or, with no verified chain, an error for the operator) before applying.
                rekey.follow(self.node, peer, self.client.descriptor)
                with self.node.db.read() as session:
                    known_keys = rekey.known_key_ids(session, peer)
            applied = sync.apply_page(self.node, peer, after, page)
            result.pages += 1
            result.applied += applied.applied
            result.duplicate += applied.duplicate
            result.refused += applied.refused
            result.cursor = page.next
            if applied.stale:
                # Someone else applied that page (or the peer was removed): go on from the
                # stored cursor.
                with self.node.db.read() as session:
                    row = self._peer_row(session, peer)
                    url, after = row.url, row.cursor
                continue
            after = page.next
            if not page.has_more:
                break
        with self.node.db.write() as session:
            peer_row = store.get_peer(session, peer)
            if peer_row is not None:
                peer_row.last_success = utcnow()
                peer_row.last_error = None
                peer_row.failures = 0
                session.add(peer_row)

    @staticmethod
    def _peer_row(session: Session, peer: str) -> PeerRow:
        """`peer`'s row; FederationError if it is no longer a peer (removed mid-round)."""
        row = store.get_peer(session, peer)
        if row is None:
            raise FederationError(f"{peer} is not a current peer")
        return row

    def _record_failure(self, peer: str, error: str) -> None:
        try:
            with self.node.db.write() as session:
                row = store.get_peer(session, peer)
                if row is not None:
                    row.last_error = error
                    row.failures += 1
                    session.add(row)
        except Exception:  # status bookkeeping must not hide the original failure
            log.exception("could not record the failure of %s", peer)

    def pull_all(self) -> list[PullResult]:
        return [self.pull(p) for p in self.current_peers()]

    def current_peers(self) -> list[str]:
        with self.node.db.read() as session:
            return [r.origin for r in store.list_peers(session)]

    # --- pushing -------------------------------------------------------------------------------

    def changed(self) -> None:
        """After-commit hook: cheap, never blocks on the network."""
        self._push.set()

    def _change_mark(self) -> tuple[int, int]:
        with self.node.db.read() as session:
            s = session.execute(select(func.max(SignalRow.change_seq))).scalar() or 0
            f = session.execute(select(func.max(FeedbackRow.change_seq))).scalar() or 0
        return int(s), int(f)

    def push(self, *, force: bool = False) -> int:
        """Notify every peer that our log grew, if signals or feedback changed; returns how
        many peers were told."""
        mark = self._change_mark()
        if not force and mark == self._last_pushed:
            return 0
        self._last_pushed = mark
        cp = exchange_log.publish_checkpoint(self.node)
        notify = Notify(self.node.origin, cp.size, cp.note)
        told = 0
        with self.node.db.read() as session:
            targets = [(r.origin, r.url) for r in store.list_peers(session)]
        for origin, url in targets:
            # Each peer on its own thread: a slow peer delays only its own notify. A peer whose
            # previous notify is still in flight is skipped; it will pull on its own schedule.
            if self._notify_tasks.submit(
                origin, functools.partial(self._notify, origin, url, notify)
            ):
                told += 1
        return told

    def _notify(self, origin: str, url: str, notify: Notify) -> None:
        try:
            self.client.notify(url, notify)
        except SignetError as exc:
            log.info("notify to %s failed: %s", origin, exc)

    # --- loops ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn("federation-push", self._push_loop)
        self._spawn("federation-lease", self.lease.keep, self._stop, self._lease_changed)
        self._spawn("federation-peers", self._supervise)

    def _lease_changed(self, held: bool) -> None:
        if not held:
            log.warning("pull lease lost: stopping this process's pull loops")
        self._resupervise.set()

    def stop(self) -> None:
        self._stop.set()
        self._push.set()
        self._resupervise.set()
        with self._lock:
            for event in self._wake.values():
                event.set()
            threads = [*self._threads, *self._loops.values()]
        for t in threads:
            t.join(timeout=10)
        self.key_follower.join(timeout=10)
        self.client.close()

    def _spawn(self, name: str, target: Any, *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def _push_loop(self) -> None:
        while not self._stop.is_set():
            self._push.wait()
            if self._stop.is_set():
                return
            time.sleep(0.02)  # coalesce a burst of commits into one notify
            self._push.clear()
            try:
                self.push()
            except Exception:  # the next change retries; the loop lives on
                log.exception("push failed")

    def _supervise(self) -> None:
        """Keep one pull loop per current peer (peers come and go at run time), and none at
        all unless this process holds the pull lease."""
        while not self._stop.is_set():
            try:
                peers = set(self.current_peers()) if self.lease.held else set()
                with self._lock:
                    for peer in peers - set(self._loops):
                        self._start_loop(peer)
                    for peer in set(self._loops) - peers:
                        self._wake[peer].set()
            except Exception:
                log.exception("peer supervisor round failed")
            self._resupervise.wait(2.0)
            self._resupervise.clear()

    def _peer_loop(self, peer: str) -> None:
        event = self._wake[peer]
        failures = 0
        delay = random.uniform(0, 1.0)  # noqa: S311  (jitter, not a secret)
        interval = self.node.settings.sync_interval
        while not self._stop.is_set():
            event.wait(delay)
            event.clear()
            if self._stop.is_set() or not self.lease.held:
                break
            try:
                if peer not in self.current_peers():
                    break
                result = self.pull(peer)
            except Exception as exc:  # e.g. the database is away: back off, keep the loop
                log.exception("sync loop for %s failed", peer)
                result = PullResult(peer, error=f"{type(exc).__name__}: {exc}"[:500])
            if result.error is None:
                failures = 0
                delay = interval * random.uniform(0.8, 1.2)  # noqa: S311
            else:
                failures += 1
                base = min(MAX_BACKOFF, min(interval, 1.0) * 2**failures)
                delay = base * random.uniform(0.5, 1.0)  # noqa: S311
        with self._lock:
            self._loops.pop(peer, None)
            self._wake.pop(peer, None)


def _path(url: str) -> str:
    # Log the path only: query strings are ours, but keep lines short and uniform.
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"
