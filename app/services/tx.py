"""Write transactions that append to the exchange log in the same commit as the change."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from app.crypto.canonical import canonical_json
from app.services.node import Node
from app.services.timefmt import rfc3339
from app.storage.log import LogAppender
from app.storage.types import utcnow

log = logging.getLogger("signet.tx")

# TLP levels whose records the log carries only as a salted commitment: the log can be shown to
# an auditor without widening the record's audience, and erasing the salt later hides it for good.
COMMITTED_TLP = frozenset({"red", "amber"})


@dataclass
class Tx:
    node: Node
    session: Session
    log: LogAppender

    def append(self, kind: str, body: dict[str, Any]) -> int:
        """Append an entry `{kind, time, **body}` to the log; returns its index."""
        now = utcnow()
        entry = {"kind": kind, "time": rfc3339(now), **body}
        return self.log.append(kind, canonical_json(entry), now)

    def append_record(self, kind: str, record: dict[str, Any], tlp: str, **extra: Any) -> int:
        """Log a signed record in full, or as a salted commitment if its audience is restricted."""
        if tlp not in COMMITTED_TLP:
            return self.append(kind, {"record": record, **extra})
        salt = secrets.token_bytes(32)
        commitment = hashlib.sha256(salt + canonical_json(record)).hexdigest()
        index = self.append(kind, {"commitment": commitment, "tlp": tlp, **extra})
        self.log.set_salt(index, salt)
        return index


@contextmanager
def transaction(node: Node) -> Iterator[Tx]:
    with node.db.write() as session:
        tx = Tx(node, session, LogAppender(session))
        yield tx
        tx.log.close()
    for hook in node.after_commit:
        try:
            hook()
        except Exception:  # the change is committed; a hook failing must not turn it into a 500
            log.exception("after-commit hook %r failed", hook)
