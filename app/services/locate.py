"""Find the node an operator command acts on, without creating one by mistake.

`signet serve` creates the data directory, database and key on first start. Operator verbs
(`api-keys`, `peers`, `key show`, `log`, `backup`, ...) must not: run in the wrong directory,
they used to make a fresh database and key and print an API key the real node refuses. Here
they refuse instead, saying which data directory and database they found and how to point
them at the node's.

A database belongs to a node when it holds Signet's schema, and the last `config` entry of its
log (logged at every start) names the origin in SIGNET_ORIGIN and a verifier key this data
directory's key file holds (now, or before a rotation).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.errors import ConfigError
from app.services.node import Node, key_path
from app.settings import Settings
from app.storage.db import Database

HINT = "run it where the node runs, or set SIGNET_DATA_DIR / SIGNET_DATABASE_URL to the node's"


class NotTheNode(ConfigError):
    """The data directory or database is not (or not yet) a Signet node's."""


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(settings: Settings) -> Path | None:
    if not settings.is_sqlite:
        return None
    database = make_url(settings.database_url).database
    return Path(database) if database and database != ":memory:" else None


def open_existing_node(settings: Settings) -> Node:
    """The node at `settings`, migrated to head; NotTheNode if there is none or it is another's."""
    from app.crypto.keys import NodeKey
    from app.services.keys import retired_keys
    from app.storage import logscan
    from app.storage import migrate as migrations

    where = f"data dir {settings.data_dir.resolve()}, database {redact(settings.database_url)}"
    path = sqlite_path(settings)
    if path is not None and not path.is_file():
        raise NotTheNode(f"no Signet node here ({where}): no database file; {HINT}")
    key_file = key_path(settings)
    if not key_file.is_file():
        raise NotTheNode(f"no node key at {key_file.resolve()} ({where}); {HINT}")
    db = Database(settings.database_url)
    try:
        try:
            revision = migrations.current_revision(db)
        except SQLAlchemyError as exc:
            raise NotTheNode(f"cannot open the database ({where}): {_first_line(exc)}") from None
        if revision is None:
            raise NotTheNode(f"the database has no Signet schema ({where}); {HINT}")
        migrations.upgrade(db)
        with db.read() as session:
            config = logscan.logged_config(session)
        key = NodeKey.load(key_file)
        if config is not None:
            logged_origin = config.get("origin")
            if logged_origin and logged_origin != settings.origin:
                raise NotTheNode(
                    f"the database belongs to node {logged_origin!r} but SIGNET_ORIGIN is "
                    f"{settings.origin!r} ({where}); set SIGNET_ORIGIN={logged_origin}"
                )
            logged_key = config.get("verifier_key")
            ours = {key.verifier_key(settings.origin)} | {str(k) for k in retired_keys(settings)}
            if logged_key and logged_key not in ours:
                raise NotTheNode(
                    f"the key file {key_file.resolve()} is not the key of the node whose database "
                    f"this is ({where}); {HINT}"
                )
    except BaseException:
        db.dispose()
        raise
    return Node(settings=settings, db=db, key=key)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
