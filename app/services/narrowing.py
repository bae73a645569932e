"""Who an origin keeps its next records away from: removed peers and narrowed policies.

Removing a peer or narrowing its sharing policy stops OUR direct deliveries at once, but a
green record may be relayed, and a relay applies only the record's signed audience and its own
policies. So every green/clear signal we sign names, in `audience.exclude`, the peers that must
not get it from anyone: every peer we removed, and every current peer whose policy does not
allow this record. Relays refuse to hand it to them and they refuse to keep it (see
`app.federation.audience`). Red and amber records need no list: they are never relayed.

The list is visible to every recipient of the record (a removal is no secret from the
federation); docs/federation.md discusses the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from app.federation.audience import MAX_EXCLUDED, RecordMeta, SharingPolicy, Tlp
from app.federation.errors import InvalidPolicy
from app.storage import peers as store


@dataclass(frozen=True)
class Narrowing:
    removed: frozenset[str]
    policies: dict[str, SharingPolicy]

    @classmethod
    def load(cls, session: Session) -> Narrowing:
        """Read once per batch (a query), then judge every record of the batch in memory."""
        removed: set[str] = set()
        policies: dict[str, SharingPolicy] = {}
        for row in store.list_peers(session, removed=True):
            if row.removed_at is not None:
                removed.add(row.origin)
                continue
            try:
                policies[row.origin] = SharingPolicy.from_dict(row.policy)
            except InvalidPolicy:
                removed.add(row.origin)  # an unusable stored policy shares nothing
        return cls(frozenset(removed), policies)

    def excluded(self, body: dict[str, Any], our_origin: str) -> list[str]:
        """The sorted origins `body` (an unsigned signal body of ours) must never reach."""
        if not self.removed and not self.policies:
            return []  # no peers at all: nothing to judge (and no record parsing per signal)
        meta = RecordMeta.from_record({**body, "origin": our_origin}, 0)
        if meta.tlp not in (Tlp.GREEN, Tlp.CLEAR):
            return []
        out = set(self.removed)
        out.update(o for o, policy in self.policies.items() if not policy.allows(meta))
        out.discard(our_origin)
        return sorted(out)[:MAX_EXCLUDED]
