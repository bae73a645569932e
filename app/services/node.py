"""The running node: settings, database, key and in-memory match index, wired once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.crypto.keys import NodeKey
from app.settings import Settings
from app.signals.match_index import MatchIndex
from app.storage.db import Database

log = logging.getLogger("signet.node")

KEY_FILE = "node.key"


@dataclass
class Node:
    settings: Settings
    db: Database
    key: NodeKey
    index: MatchIndex = field(default_factory=MatchIndex)
    # Run after every committed write transaction: index refresh, federation push.
    after_commit: list[Callable[[], object]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.settings.origin

    @property
    def verifier_key(self) -> str:
        return self.key.verifier_key(self.settings.origin)

    @property
    def key_id(self) -> str:
        # key_id in signed records: the 8-hex key hash of our verifier key.
        return self.verifier_key.split("+")[1]


def key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def make_private_dir(path: Path) -> None:
    """The data directory holds the node key and (by default) the database: owner only, 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
            log.warning("data directory %s was open to other users; set to 0700", path)
    except PermissionError:  # not ours (a mounted volume): say so, do not fail the start
        log.warning("data directory %s: cannot set its mode to 0700", path)


def open_node(settings: Settings, *, migrate: bool = True) -> Node:
    """Open the database (migrating it to head) and load or create the node key."""
    from app.storage import migrate as migrations

    make_private_dir(settings.data_dir)
    db = Database(settings.database_url)
    if migrate:
        migrations.upgrade(db)
    if not key_path(settings).exists():
        _warn_if_the_database_has_a_key(settings, db)
    key = NodeKey.load_or_create(key_path(settings))
    shared = settings.pdq_shared_base is True  # unset: private (`signet serve` decides)
    index = MatchIndex(
        str(pdq_base_path(settings)) if shared else None,
        str(pdq_base_path(settings, "vpdq")) if shared else None,
        pdq_layout=settings.pdq_layout,
    )
    return Node(settings=settings, db=db, key=key, index=index)


def _warn_if_the_database_has_a_key(settings: Settings, db: Database) -> None:
    """A host of a running node started without the node's key file would make a key of its
    own and sign the node's log with it, which no peer or auditor has pinned (a second host
    set up by docs/scaling.md with the key not copied yet). Not refused: a node that lost its
    key for good starts over this way, and its peers re-pin by hand (docs/operating.md)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.storage import logscan

    try:
        with db.read() as session:
            config = logscan.logged_config(session)
    except SQLAlchemyError:  # no schema yet (migrate=False on a new database): a new node
        return
    logged = (config or {}).get("verifier_key")
    if logged:
        log.warning(
            "no node key at %s, but the database already belongs to a node with verifier key "
            "%s: creating a NEW key. If this is another host of that node, stop it and copy "
            "the node's key file here first (docs/scaling.md, Running N hosts).",
            key_path(settings),
            logged,
        )


def warn_if_another_key_is_logged(node: Node, logged: dict[str, Any] | None, index: int) -> None:
    """Warn when the configuration logged before entry `index` (`logged`) names a node key that
    is neither this host's nor one it rotated from: this host has just logged its own key in its
    place (see `log_config_if_changed`)."""
    from app.crypto.errors import MalformedError
    from app.crypto.keys import VerifierKey
    from app.services.keys import retired_keys

    text = (logged or {}).get("verifier_key")
    if not isinstance(text, str):
        return
    try:
        theirs = VerifierKey.parse(text).public_key
    except MalformedError:
        return
    ours = {node.key.verifier(node.origin).public_key}
    ours |= {k.public_key for k in retired_keys(node.settings)}
    if theirs in ours:
        return
    log.warning(
        "the node's log named verifier key %s, not this host's key %s: this host logged its "
        "own key in its place at entry %d. If this is another host of that node, stop it and "
        "copy the node's key file to %s (docs/scaling.md, Running N hosts).",
        text,
        node.verifier_key,
        index,
        key_path(node.settings),
    )


def pdq_base_path(settings: Settings, kind: str = "pdq") -> Path:
    """The base of the PDQ index (`kind` "pdq") or of the vPDQ frame index ("vpdq") that
    every worker of this host maps (docs/scaling.md)."""
    return settings.data_dir / "index" / f"{kind}.pdqbase"
