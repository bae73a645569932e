"""Background loops of one node process: checkpoints, witnessing, expiry, purge.

Each duty has its own thread and catches everything, so one failing or slow duty never stops or
delays another: a checkpoint is published on time even while a witness peer hangs, and each
witness peer is asked on its own thread (`duties.PeerTasks`). Pulls and notifications run in
`services/federation.py`, one loop per peer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.services import log as exchange_log
from app.services import signals
from app.services.duties import PeerTasks
from app.services.node import Node

if TYPE_CHECKING:
    from app.services.federation import Federation

log = logging.getLogger("signet.background")


class Background:
    def __init__(self, node: Node, federation: Federation | None = None) -> None:
        self.node = node
        self.federation = federation
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._witness_tasks = PeerTasks("witness")

    def every(self, seconds: float, name: str, job: Callable[[], object]) -> None:
        def run() -> None:
            while not self._stop.wait(seconds):
                try:
                    job()
                except Exception:  # a failed round is retried next time; the loop lives on
                    log.exception("background job %s failed", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)

    def start(self) -> None:
        settings = self.node.settings
        self.every(settings.checkpoint_interval, "checkpoint", self._checkpoint)
        if self.federation is not None:
            self.every(settings.checkpoint_interval, "witness", self._witness)
            self.every(60.0, "nonce-purge", self.federation.nonces.purge)
        if settings.roster_stewards:
            # Follow the federation roster: once at start, then every roster_refresh seconds.
            from app.services import roster

            def refresh_roster() -> None:
                roster.refresh(self.node)

            self.every(settings.roster_refresh, "roster", refresh_roster)
            threading.Thread(
                target=self._once, args=("roster", refresh_roster), daemon=True
            ).start()
        self.every(settings.expire_interval, "expire", lambda: signals.expire_due(self.node))
        self.every(3600.0, "purge", lambda: signals.purge(self.node))
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _once(name: str, job: Callable[[], object]) -> None:
        try:
            job()
        except Exception:
            log.exception("background job %s failed", name)

    def _checkpoint(self) -> None:
        exchange_log.publish_checkpoint(self.node)

    def _witness(self) -> None:
        # Peers that have not cosigned the latest checkpoint are asked, each on its own thread;
        # this returns at once, so a hanging witness holds up nobody.
        from app.services import witness

        assert self.federation is not None
        witness.request_cosignatures(self.node, self.federation.client, tasks=self._witness_tasks)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
