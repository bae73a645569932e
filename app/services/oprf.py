"""Identifier OPRF at run time: the key-holder side and the member-node side.

A node can be either or both (docs/identifiers.md):

- a **key holder** loads its share files (`SIGNET_OPRF_SHARE_FILES`) and answers signed
  `POST /federation/v1/oprf/evaluate` from member nodes that are its pinned peers: a batch of
  blinded elements in, its partial evaluations and one DLEQ proof out. Each member node has an
  evaluation budget (`SIGNET_OPRF_HOLDER_LIMIT` per minute, 429 past it) and every answered
  batch is counted in the holder's exchange log as an `oprf_tally` entry (member, epoch,
  count): an auditor of the holder sees who asked for how many evaluations.
- a **member node** loads the public epoch files (`SIGNET_OPRF_EPOCH_FILES`, the first is the
  current epoch) and serves its API clients `POST /v1/identifiers/oprf/evaluate`: it checks each
  blinded element, spends the API key's budget (`SIGNET_OPRF_KEY_LIMIT`), forwards the good
  elements to `threshold` holders (more if one fails), verifies every holder's proof, names and
  skips a holder whose proof fails, and returns the verified partials. The client verifies
  them again and combines them itself: the node never sees an identifier or an output.

The public epochs (and which this node holds a share of) are logged as an `oprf_keys` entry
whenever they change, and published in `/.well-known/signet`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.crypto import oprf
from app.crypto import oprf_threshold as th
from app.crypto._encoding import b64decode, b64encode
from app.crypto.errors import MalformedError
from app.errors import ConfigError, FederationError, InvalidInput, NotFound, SignetError
from app.federation.client import PeerClient, PeerUnreachable
from app.services.node import Node
from app.services.oprf_limits import EvaluationLimiter
from app.settings import Settings
from app.storage import logscan
from app.storage import peers as peer_store

log = logging.getLogger("signet.oprf")

__all__ = [
    "HOLDER_PATH",
    "KEYS_KIND",
    "MAX_BATCH",
    "TALLY_KIND",
    "HeldShare",
    "HoldersUnavailable",
    "OprfService",
    "epoch_ids",
    "load_epoch_file",
    "load_share_file",
    "share_file_json",
    "write_ceremony",
]

HOLDER_PATH = "/federation/v1/oprf/evaluate"
KEYS_KIND = "oprf_keys"
TALLY_KIND = "oprf_tally"
MAX_BATCH = 1000
SHARE_KIND = "signet-oprf-share"


class _HolderLimited(FederationError):
    """A key holder answered 429: this member node is over its budget there."""


class HoldersUnavailable(FederationError):
    """Fewer than `threshold` key holders gave a verified answer. `refused` names each one
    that failed and why; `status` is 429 when holders' limits were the cause, else 502."""

    def __init__(self, message: str, refused: list[dict[str, str]], status: int) -> None:
        super().__init__(message)
        self.refused = refused
        self.status = status


@dataclass(frozen=True)
class HeldShare:
    epoch: th.Epoch
    holder: str
    share: int


def share_file_json(epoch: th.Epoch, holder: str, share: int) -> dict[str, Any]:
    return {
        "kind": SHARE_KIND,
        "holder": holder,
        "epoch": epoch.to_json(),
        "share": b64encode(oprf.scalar_bytes(share)),
    }


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{what} {path}: not JSON") from None


def write_ceremony(epoch_id: str, holders: Sequence[str], threshold: int, out: Path) -> list[Path]:
    """Deal a new epoch: `<epoch>.epoch.json` (public) and `<epoch>.<holder>.share.json`
    (secret, mode 0600) per holder, in `out`. Refuses to overwrite."""
    epoch, shares = th.deal(epoch_id, list(holders), threshold)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    public = out / f"{epoch_id}.epoch.json"
    targets = [public] + [out / f"{epoch_id}.{h}.share.json" for h in holders]
    for t in targets:
        if t.exists():
            raise ConfigError(f"{t} exists; refusing to overwrite an epoch's files")
    for holder in holders:
        path = out / f"{epoch_id}.{holder}.share.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(share_file_json(epoch, holder, shares[holder]), f, indent=1)
        written.append(path)
    public.write_text(json.dumps(epoch.to_json(), indent=1) + "\n", encoding="utf-8")
    written.insert(0, public)
    return written


def load_share_file(path: Path, origin: str) -> HeldShare:
    """A holder's share file; refuses one readable by others, for another origin, or whose
    share does not match the public share the epoch publishes for us."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"OPRF share file {path}: {exc.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"OPRF share file {path} is readable by others: chmod 600 it")
    data = _read_json(path, "OPRF share file")
    if not isinstance(data, dict) or data.get("kind") != SHARE_KIND:
        raise ConfigError(f"OPRF share file {path}: not a {SHARE_KIND} file")
    try:
        epoch = th.Epoch.from_json(data.get("epoch"))
        share = oprf.deserialize_scalar(b64decode(str(data.get("share")), "share"), "share")
    except MalformedError as exc:
        raise ConfigError(f"OPRF share file {path}: {exc}") from None
    if data.get("holder") != origin:
        raise ConfigError(f"OPRF share file {path} is for {data.get('holder')}, not {origin}")
    holder = epoch.holder(origin)
    if share == 0 or oprf.public_key(share) != holder.public_share:
        raise ConfigError(f"OPRF share file {path}: the share does not match its public share")
    return HeldShare(epoch, origin, share)


def load_epoch_file(path: Path) -> th.Epoch:
    data = _read_json(path, "OPRF epoch file")
    try:
        return th.Epoch.from_json(data)
    except MalformedError as exc:
        raise ConfigError(f"OPRF epoch file {path}: {exc}") from None


def _paths(value: str) -> list[Path]:
    return [Path(p.strip()) for p in value.split(",") if p.strip()]


def epoch_ids(settings: Settings) -> frozenset[str]:
    """The epoch ids (identifier `key_id`s) this node's configuration names (read once)."""
    return _epoch_ids(settings.oprf_epoch_files, settings.oprf_share_files)


@functools.lru_cache(maxsize=8)
def _epoch_ids(epoch_files: str, share_files: str) -> frozenset[str]:
    ids = {load_epoch_file(p).epoch for p in _paths(epoch_files)}
    for p in _paths(share_files):
        data = _read_json(p, "OPRF share file")
        epoch = data.get("epoch", {}) if isinstance(data, dict) else {}
        if isinstance(epoch, dict) and isinstance(epoch.get("epoch"), str):
            ids.add(epoch["epoch"])
    return frozenset(ids)


def _elements(raw: Any, field: str = "blinded") -> list[bytes]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(field, "a non-empty list of base64 ristretto255 elements")
    if len(raw) > MAX_BATCH:
        raise InvalidInput(field, f"at most {MAX_BATCH} elements per request")
    return raw


class OprfService:
    def __init__(self, node: Node, client: PeerClient | None = None) -> None:
        self.node = node
        self.client = client
        s = node.settings
        self.shares: dict[str, HeldShare] = {}
        for p in _paths(s.oprf_share_files):
            held = load_share_file(p, node.origin)
            self.shares[held.epoch.epoch] = held
        self.epochs: dict[str, th.Epoch] = {}
        for p in _paths(s.oprf_epoch_files):
            e = load_epoch_file(p)
            self.epochs[e.epoch] = e
        self.current = next(iter(self.epochs), None)
        for held in self.shares.values():
            self.epochs.setdefault(held.epoch.epoch, held.epoch)
        self.holder_limits = EvaluationLimiter(s.oprf_holder_limit)
        self.key_limits = EvaluationLimiter(s.oprf_key_limit)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="oprf")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def enabled(self) -> bool:
        return bool(self.epochs)

    # --- publication ----------------------------------------------------------------------

    def public(self) -> dict[str, Any]:
        """What the descriptor and the `oprf_keys` log entry publish: no secret."""
        return {
            "current": self.current,
            "holds": sorted(self.shares),
            "epochs": [e.to_json() for e in self.epochs.values()],
        }

    def log_keys_if_changed(self) -> int | None:
        """Append an `oprf_keys` entry when the epochs or held shares differ from the last one."""
        if not self.enabled:
            return None
        from app.services.tx import transaction

        body = self.public()
        with transaction(self.node) as tx:
            last = logscan.last_entry_of_kind(tx.session, KEYS_KIND)
            if last is not None and json.loads(last.data).get("oprf") == body:
                return None
            index = tx.append(KEYS_KIND, {"oprf": body})
        log.info("logged OPRF key epochs at entry %d", index)
        return index

    def epoch(self, epoch_id: Any) -> th.Epoch:
        if epoch_id is None:
            if self.current is None:
                raise NotFound("this node serves no OPRF epoch (set SIGNET_OPRF_EPOCH_FILES)")
            return self.epochs[self.current]
        if not isinstance(epoch_id, str) or epoch_id not in self.epochs:
            raise InvalidInput("epoch", f"unknown OPRF epoch; this node serves: {self._known()}")
        return self.epochs[epoch_id]

    def _known(self) -> str:
        return ", ".join(self.epochs) or "none"

    # --- key holder -----------------------------------------------------------------------

    def holder_evaluate(self, member: str, body: bytes) -> dict[str, Any]:
        """Evaluate a member node's batch with our share; count it in the log."""
        try:
            req = json.loads(body)
        except ValueError:
            raise InvalidInput("", "the body must be JSON") from None
        if not isinstance(req, dict):
            raise InvalidInput("", "the body must be a JSON object")
        epoch_id = req.get("epoch")
        if not isinstance(epoch_id, str) or epoch_id not in self.shares:
            raise InvalidInput(
                "epoch", f"this node holds no share of that epoch; it holds: {self._held()}"
            )
        raw = _elements(req.get("blinded"))
        blinded = [
            oprf.deserialize_element(
                b64decode(x, f"blinded[{i}]") if isinstance(x, str) else b"", f"blinded[{i}]"
            )
            for i, x in enumerate(raw)
        ]
        # The budget is spent before the work: a refused batch costs us nothing.
        self.holder_limits.take(member, len(blinded), who=f"member node {member}")
        held = self.shares[epoch_id]
        evaluated, proof = th.evaluate_share(held.share, blinded)
        from app.services.tx import transaction

        with transaction(self.node) as tx:
            tx.append(TALLY_KIND, {"member": member, "epoch": epoch_id, "count": len(blinded)})
        return {
            "epoch": epoch_id,
            "holder": self.node.origin,
            "evaluated": [b64encode(e) for e in evaluated],
            "proof": b64encode(proof),
        }

    def _held(self) -> str:
        return ", ".join(self.shares) or "none"

    # --- member node ----------------------------------------------------------------------

    def member_evaluate(self, caller: str, req: Any) -> dict[str, Any]:
        """Forward a client's blinded elements to `threshold` holders; verified partials out.

        Per item: a malformed element is refused (`refused`, with its field) and the others go
        on. Holders that fail (unreachable, refusing, or with a proof that does not verify) are
        named in `refused_holders`; the next holder is asked instead.
        """
        if not isinstance(req, dict):
            raise InvalidInput("", "the body must be a JSON object")
        epoch = self.epoch(req.get("epoch"))
        raw = _elements(req.get("blinded"))
        accepted: list[int] = []
        blinded: list[bytes] = []
        refused: list[dict[str, str]] = []
        for i, x in enumerate(raw):
            field = f"blinded[{i}]"
            try:
                if not isinstance(x, str):
                    raise InvalidInput(field, "a base64 ristretto255 element")
                blinded.append(oprf.deserialize_element(b64decode(x, field), field))
                accepted.append(i)
            except InvalidInput as exc:
                refused.append({"field": field, "reason": exc.reason})
        if not blinded:
            raise InvalidInput(refused[0]["field"], refused[0]["reason"])
        self.key_limits.take(f"key:{caller}", len(blinded), who=f"API key {caller}")
        partials, holder_refusals = self._ask_holders(epoch, blinded)
        return {
            "epoch": epoch.epoch,
            "threshold": epoch.threshold,
            "accepted": accepted,
            "refused": refused,
            "partials": [
                {
                    "holder": p.holder,
                    "evaluated": [b64encode(e) for e in p.evaluated],
                    "proof": b64encode(p.proof),
                }
                for p in partials
            ],
            "refused_holders": holder_refusals,
        }

    def _ask_holders(
        self, epoch: th.Epoch, blinded: Sequence[bytes]
    ) -> tuple[list[th.Partial], list[dict[str, str]]]:
        if self.client is None:
            raise ConfigError("this node has no federation client")
        body = json.dumps(
            {"epoch": epoch.epoch, "blinded": [b64encode(b) for b in blinded]}
        ).encode()
        with self.node.db.read() as session:
            urls = {}
            for h in epoch.holders:
                row = peer_store.get_peer(session, h.origin)
                if row is not None:
                    urls[h.origin] = row.url
        queue = [h.origin for h in epoch.holders]
        good: list[th.Partial] = []
        refusals: list[dict[str, str]] = []
        limited = 0
        while len(good) < epoch.threshold and queue:
            batch, queue = (
                queue[: epoch.threshold - len(good)],
                queue[epoch.threshold - len(good) :],
            )
            futures = {
                o: self._pool.submit(self._ask_one, epoch, o, urls.get(o), body, blinded)
                for o in batch
            }
            for origin, fut in futures.items():
                try:
                    good.append(fut.result())
                except _HolderLimited as exc:
                    limited += 1
                    refusals.append({"holder": origin, "reason": str(exc)})
                except (th.HolderProofError, FederationError, SignetError) as exc:
                    reason = exc.reason if isinstance(exc, th.HolderProofError) else str(exc)
                    log.warning("OPRF key holder %s refused: %s", origin, reason)
                    refusals.append({"holder": origin, "reason": reason})
        if len(good) < epoch.threshold:
            status = 429 if limited and limited + len(good) >= epoch.threshold else 502
            names = ", ".join(r["holder"] for r in refusals) or "none"
            raise HoldersUnavailable(
                f"{len(good)} of the {epoch.threshold} key holders needed for epoch "
                f"{epoch.epoch} answered with a verified evaluation; refused: {names}",
                refusals,
                status,
            )
        return good, refusals

    def _ask_one(
        self, epoch: th.Epoch, origin: str, url: str | None, body: bytes, blinded: Sequence[bytes]
    ) -> th.Partial:
        assert self.client is not None
        if url is None:
            raise FederationError(f"key holder {origin} is not a pinned peer of this node")
        try:
            resp = self.client.request(
                "POST", url.rstrip("/") + HOLDER_PATH, body, content_type="application/json"
            )
        except PeerUnreachable as exc:
            raise FederationError(f"unreachable: {exc}") from None
        if resp.status_code == 429:
            retry = resp.headers.get("retry-after", "?")
            raise _HolderLimited(f"rate limit reached at this holder (retry after {retry} s)")
        if resp.status_code != 200:
            raise FederationError(f"answered {PeerClient._refused(resp).detail}")
        try:
            data = resp.json()
            evaluated = tuple(
                oprf.deserialize_element(b64decode(x, "evaluated"), "evaluated")
                for x in data["evaluated"]
            )
            proof = b64decode(data["proof"], "proof")
        except (ValueError, KeyError, TypeError, MalformedError) as exc:
            raise th.HolderProofError(origin, f"malformed answer ({exc})") from None
        if data.get("holder") != origin or data.get("epoch") != epoch.epoch:
            raise th.HolderProofError(origin, "answered for another holder or epoch")
        partial = th.Partial(origin, evaluated, proof)
        th.verify_partial(epoch, blinded, partial)  # raises HolderProofError naming it
        return partial
