"""Write transactions that append to the exchange log in the same commit as the change."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from app import gcpause
from app.crypto.canonical import canonical_json
from app.services.node import Node
from app.services.timefmt import rfc3339
from app.storage.db import Database, WriteTx
from app.storage.log import LogAppender
from app.storage.types import utcnow

log = logging.getLogger("signet.tx")

# TLP levels whose records the log carries only as a salted commitment: the log can be shown to
# an auditor without widening the record's audience, and erasing the salt later hides it for good.
COMMITTED_TLP = frozenset({"red", "amber"})


class Tx:
    """What a write transaction's body gets: the node, the ORM `session` and the `log`."""

    def __init__(
        self,
        node: Node,
        wt: WriteTx,
        log: LogAppender,
        on_session: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.log = log
        self._wt = wt
        # Group commit: opens this caller's savepoint, the first time it uses the session.
        self._on_session = on_session
        self._now: datetime | None = None
        # Entry templates of `_append_with_record`, per (kind, time, extra member names).
        self._templates: dict[tuple[str, str, tuple[str, ...]], _Template | None] = {}
        self._pause: AbstractContextManager[None] | None = None  # pause_gc_until_committed

    def pause_gc_until_committed(self) -> None:
        """Pause the cyclic collector (app/gcpause.py) from now until this caller's changes
        are committed: for bodies that allocate a bounded burst of objects that stay alive
        until the commit (a page of peer records). A pause that ended with the body would let
        the first allocation after it run a collection over everything the body built, in the
        transaction's exit. In a group commit the pause ends when this caller's turn ends: if
        others still join the group, it is not held while waiting for their commit."""
        if self._pause is None:
            pause = gcpause.paused()
            pause.__enter__()
            self._pause = pause

    def _end_pause(self) -> None:
        pause, self._pause = self._pause, None
        if pause is not None:
            pause.__exit__(None, None, None)

    @property
    def now(self) -> datetime:
        """The time of this caller's changes, read once: the `time` its log entries and the
        `valid_from` its records state (whole seconds), as they commit together. Formatting
        a fresh clock reading for each of them was 2-3 % of a bulk submit. (The entries'
        stored `created_at`, which TAXII pages by, stays one clock reading per entry:
        `LogAppender.append`.)"""
        if self._now is None:
            self._now = utcnow()
        return self._now

    @property
    def session(self) -> Session:
        """The transaction's ORM session, opened on first use (log appends need none)."""
        if self._on_session is not None:
            hook, self._on_session = self._on_session, None
            hook()
        return self._wt.session

    def append(self, kind: str, body: dict[str, Any]) -> int:
        """Append an entry `{kind, time, **body}` to the log; returns its index."""
        entry = {"kind": kind, "time": rfc3339(self.now), **body}
        return self.log.append(kind, canonical_json(entry))

    def append_record(
        self,
        kind: str,
        record: dict[str, Any],
        tlp: str,
        *,
        record_bytes: bytes | None = None,
        **extra: Any,
    ) -> int:
        """Log a signed record in full, or as a salted commitment if its audience is restricted.
        `record_bytes`: the record's canonical bytes, if the caller has them already."""
        if tlp not in COMMITTED_TLP:
            if record_bytes is None:
                return self.append(kind, {"record": record, **extra})
            return self._append_with_record(kind, record_bytes, extra)
        return self.append_committed(kind, record, tlp, body_bytes=record_bytes, **extra)

    def append_committed(
        self,
        kind: str,
        body: dict[str, Any],
        tlp: str,
        *,
        body_bytes: bytes | None = None,
        **extra: Any,
    ) -> int:
        """Append `{kind, time, commitment, tlp}`: `body` hidden behind a fresh 32-byte salt
        (kept beside the entry, never served), so the entry says nothing about it to a reader
        without the salt. `body_bytes`: its canonical bytes, if the caller has them already."""
        salt = secrets.token_bytes(32)
        if body_bytes is None:
            body_bytes = canonical_json(body)
        commitment = hashlib.sha256(salt + body_bytes).hexdigest()
        index = self.append(kind, {"commitment": commitment, "tlp": tlp, **extra})
        self.log.set_salt(index, salt)
        return index

    def _append_with_record(self, kind: str, record_bytes: bytes, extra: dict[str, Any]) -> int:
        """`append(kind, {"record": record, **extra})` without encoding the record again: RFC
        8785 encodes each member's value on its own and orders members by key alone, so the
        entry's canonical form is a fixed sequence of bytes with the record's canonical bytes,
        and each extra member's, in their places.

        That sequence (the template) is made once per transaction and (kind, time, extra
        member names) by encoding the entry with placeholders (`_Template`). A received record
        fills it with its bytes and with its extra values (the sender, the digest) as plain
        ASCII strings, whose canonical form is their text in quotes; any other value takes
        the general path, which encodes the entry with only the record's placeholder."""
        time = rfc3339(self.now)
        if _bare_strings(extra):
            key = (kind, time, tuple(extra))
            template = self._templates.get(key, _MISSING)
            if template is _MISSING:
                template = self._templates[key] = _Template.make(kind, time, key[2])
            if template is not None:
                return self.log.append(kind, template.fill(record_bytes, extra))
        entry = {"kind": kind, "time": time, "record": _PLACEHOLDER, **extra}
        encoded = canonical_json(entry)
        if encoded.count(_PLACEHOLDER_JSON) != 1:  # never expected; the slow path is exact
            return self.append(kind, {"record": orjson.loads(record_bytes), **extra})
        return self.log.append(kind, encoded.replace(_PLACEHOLDER_JSON, record_bytes))


# A string made of printable ASCII but the quote and the backslash is encoded by RFC 8785 as
# itself between quotes: nothing in it is escaped. (`_BARE` says so as a regex; the test below
# is the same with str's own methods, in C, without a scan by the regex engine.)
_BARE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def _bare_strings(extra: dict[str, Any]) -> bool:
    # A loop, not all() over a generator (its frame per call): two values per record.
    for v in extra.values():
        if type(v) is not str or not v.isascii() or not v.isprintable() or '"' in v or "\\" in v:
            return False
    return True


class _Template:
    """An entry `{kind, time, record, **extra}`'s canonical bytes with gaps for the record and
    the extra members' values: `parts` alternates literal bytes and the name of the member
    whose value's bytes go there ("record" for the record's canonical bytes)."""

    def __init__(self, parts: list[bytes | str]) -> None:
        self.parts = parts

    @classmethod
    def make(cls, kind: str, time: str, names: tuple[str, ...]) -> _Template | None:
        """Encode the entry with a distinct placeholder per gap and cut it at them. None if a
        placeholder's bytes do not occur exactly once (never expected: they hold NULs)."""
        slots = {
            "record": _PLACEHOLDER,
            **{n: f"\x00signet-extra-{i}\x00" for i, n in enumerate(names)},
        }
        encoded = canonical_json({"kind": kind, "time": time, **slots})
        cuts: list[tuple[int, int, str]] = []
        for name, placeholder in slots.items():
            marker = canonical_json(placeholder)
            at = encoded.find(marker)
            if at < 0 or encoded.count(marker) != 1:
                return None
            cuts.append((at, at + len(marker), name))
        cuts.sort()
        parts: list[bytes | str] = []
        pos = 0
        for start, end, name in cuts:
            parts.append(encoded[pos:start])
            parts.append(name)
            pos = end
        parts.append(encoded[pos:])
        return cls(parts)

    def fill(self, record_bytes: bytes, extra: dict[str, Any]) -> bytes:
        """The entry's bytes; every value in `extra` must match `_BARE`."""
        out = []
        for part in self.parts:
            if type(part) is bytes:
                out.append(part)
            elif part == "record":
                out.append(record_bytes)
            else:
                out.append(b'"' + extra[part].encode() + b'"')  # type: ignore[index]
        return b"".join(out)


_MISSING: Any = object()
_PLACEHOLDER = "\x00signet-record\x00"
_PLACEHOLDER_JSON = canonical_json(_PLACEHOLDER)


@contextmanager
def transaction(node: Node) -> Iterator[Tx]:
    """A write transaction with the sequencer lock; the log entries it appends commit with it.

    With `settings.group_commit`, concurrent callers in this process share one database
    transaction (see `GroupCommit`); each still sees all-or-nothing for its own work."""
    if node.settings.group_commit:
        with _committer(node).transaction() as tx:
            yield tx
    else:
        with contextlib.ExitStack() as closing, node.db.write_tx() as wt:
            tx = Tx(node, wt, LogAppender(wt))
            closing.callback(tx._end_pause)  # after the commit (or the rollback)
            yield tx
            # The log rows and the commit, lock held: no collector passes over what the
            # body allocated (see `_commit_if_last`).
            closing.enter_context(gcpause.paused())
            tx.log.close()
        tx.log.committed()
    _after_commit(node)


def _after_commit(node: Node) -> None:
    for hook in node.after_commit:
        try:
            hook()
        except Exception:  # the change is committed; a hook failing must not turn it into a 500
            log.exception("after-commit hook %r failed", hook)


# --------------------------------------------------------------------------- group commit


@dataclass(eq=False)
class _Group:
    """One open database transaction (holding the sequencer lock) shared by several callers."""

    cm: AbstractContextManager[WriteTx]
    wt: WriteTx
    log: LogAppender
    members: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommit:
    """Concurrent writers of one process share one sequencer transaction.

    Callers take turns (a lock) running their work on the group's transaction. A caller's
    SQL runs inside a SAVEPOINT, taken when it first uses `tx.session`: a caller whose work
    fails rolls back to its savepoint (and the log appender rewinds), the others are
    untouched. A caller that only appends to the log needs no savepoint (the appender holds
    its rows until the group commits, so rewinding the appender undoes them). The caller
    that finishes while nobody is waiting for a turn (or once the group has `MAX_MEMBERS`)
    commits the group; everyone returns only after that commit, so "returned" still means
    "durable". Because the group holds the sequencer lock from its first caller to its commit
    and callers append one after another, the log stays one linear sequence with gap-free
    indexes, and `change_seq` order is commit order.
    What a group saves per caller: BEGIN/lock/COMMIT (and on SQLite, the busy-wait for the
    write lock), the head update and the read of the log size.
    """

    MAX_MEMBERS = 64

    def __init__(self, db: Database) -> None:
        self.db = db
        self._turn = threading.Lock()  # whose work runs on the group's session now
        self._mu = threading.Lock()
        self._waiting = 0
        self._group: _Group | None = None
        self._last_members = 0  # the size of the group committed last

    @contextmanager
    def transaction_for(self, node: Node) -> Iterator[Tx]:
        ended: Tx | None = None  # whose collector pause ends with its turn
        with self._mu:
            self._waiting += 1
        self._turn.acquire()
        with self._mu:
            self._waiting -= 1
        try:
            if self._group is None:
                cm = self.db.write_tx()
                wt = cm.__enter__()
                self._group = _Group(cm, wt, LogAppender(wt))
            group = self._group
            # The group's first caller needs no savepoint: if its work fails, the whole
            # transaction (its work only) rolls back. Savepoints cost two statements, which a
            # lone writer would otherwise pay on every transaction.
            first = group.members == 0
            nested: list[SessionTransaction] = []  # this caller's savepoint, once taken
            try:
                mark = group.log.mark()
            except BaseException:
                self._commit_if_last(group)  # never leave the sequencer lock held
                raise

            def savepoint() -> None:
                nested.append(group.wt.session.begin_nested())

            tx = Tx(node, group.wt, group.log, None if first else savepoint)
            ended = tx
            try:
                yield tx
                # The log rows are written once for the whole group, at its commit (as in a
                # lone transaction, nothing in the body ever read them back before that).
                if nested:
                    nested[0].commit()
            except BaseException as exc:
                if first:
                    self._abort(group, exc)
                else:
                    try:
                        if nested:
                            nested[0].rollback()
                        group.log.rewind(mark)
                    finally:
                        self._commit_if_last(group)
                raise
            group.members += 1
            self._commit_if_last(group)
        finally:
            self._turn.release()
            if ended is not None:
                ended._end_pause()  # committed by now, or others are joining: not held waiting
        group.done.wait()
        if group.error is not None:
            raise group.error

    def _abort(self, group: _Group, exc: BaseException) -> None:
        """Turn held, the group's first caller failed: roll the whole transaction back."""
        self._group = None
        try:
            with contextlib.suppress(BaseException):  # the caller re-raises its own exception
                group.cm.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            group.done.set()

    def _commit_if_last(self, group: _Group) -> None:
        """Turn held: commit the group unless someone is waiting to join it."""
        with self._mu:
            if self._waiting and group.members < self.MAX_MEMBERS:
                return
        if self._last_members > 1 and group.members < self.MAX_MEMBERS:
            # Writers were concurrent a moment ago: give them one turn of the GIL to join
            # before committing. Callers just released by the last commit are still on their
            # way back; without this the group commits before they arrive (2.3 members a
            # group with 16 submitters, against 16). A lone writer never waits here.
            time.sleep(0)
            with self._mu:
                if self._waiting:
                    return
        self._last_members = group.members
        self._group = None
        exiting = False
        try:
            # Writing the log rows allocates a tuple or two per entry while everything the
            # members built (a page of peer records: hundreds of thousands of objects) is still
            # alive, so the collector ran young and full passes over all of it here, after the
            # members' own pauses had ended (app/gcpause.py). Paused from here to the commit's
            # end: bounded work, the sequencer lock held, nobody waited for.
            with gcpause.paused():
                group.log.close()
                exiting = True
                group.cm.__exit__(None, None, None)
        except BaseException as exc:
            if not exiting:  # close() failed: roll back (a failed commit already has)
                with contextlib.suppress(BaseException):  # reported through group.error
                    group.cm.__exit__(type(exc), exc, exc.__traceback__)
            group.error = exc
        else:
            group.log.committed()
        finally:
            group.done.set()


class _NodeCommitter:
    def __init__(self, node: Node) -> None:
        self.node = node

    def transaction(self) -> AbstractContextManager[Tx]:
        return _groups(self.node.db).transaction_for(self.node)


_GROUPS: weakref.WeakKeyDictionary[Database, GroupCommit] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()


def _groups(db: Database) -> GroupCommit:
    with _GROUPS_LOCK:
        g = _GROUPS.get(db)
        if g is None:
            g = _GROUPS[db] = GroupCommit(db)
        return g


def _committer(node: Node) -> _NodeCommitter:
    return _NodeCommitter(node)
