"""`signet audit reconcile`: audit several nodes' logs, then compare them.

Each log is verified in full against its pinned key (`audit_node`) while its entries stream
through two collectors: the pairwise delivery view (app/audit/federation.py) and the
withdrawal view (app/audit/withdrawals.py). Nothing is read twice, and nothing is believed
before its whole log verified.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from app.audit.client import AuditClient
from app.audit.federation import Reconciliation, log_view, reconcile
from app.audit.run import audit_node
from app.audit.withdrawals import AuditedLog, Withdrawal, collector, withdrawals
from app.crypto.keys import VerifierKey


@dataclass(frozen=True)
class NodeSpec:
    url: str
    token: str
    key: VerifierKey
    http: httpx.Client | None = None  # send through this client (tests); not closed here


@dataclass
class FederationReconciliation:
    pairs: list[Reconciliation]
    withdrawals: list[Withdrawal]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pairs) and all(w.ok for w in self.withdrawals)


def reconcile_nodes(
    nodes: list[NodeSpec],
    *,
    grace: timedelta = timedelta(minutes=2),
    evidence: bool = True,
    now: datetime | None = None,
) -> FederationReconciliation:
    """Verify every node's log, reconcile every pair, and account for every withdrawal."""
    keys = [n.key for n in nodes]
    views = []
    audited: list[AuditedLog] = []
    with contextlib.ExitStack() as stack:
        for spec in nodes:
            view = log_view(spec.key.origin)
            own = collector(spec.key.origin)

            def sink(index: int, entry: Any, view: Any = view, own: Any = own) -> None:
                view.add(entry)
                own.add(index, entry)

            others = [k for k in keys if k is not spec.key]
            report = audit_node(
                spec.url, spec.token, spec.key, peer_keys=others, sink=sink, http=spec.http
            )
            client = stack.enter_context(AuditClient(spec.url, spec.token, http=spec.http))
            views.append(view)
            audited.append(
                AuditedLog(report.origin, report.size, report.root, own, client.inclusion)
            )
        pairs = [reconcile(a, b) for a, b in itertools.combinations(views, 2)]
        found = withdrawals(audited, now=now, grace=grace, evidence=evidence)
    return FederationReconciliation(pairs, found)
