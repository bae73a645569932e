"""Partial index on the log entry kinds read back by kind (ix_log_entry_looked_up_kind)

Revision ID: i15c
Revises: i15b
Create Date: 2026-12-04 17:30:00

Finding the newest `config` entry, or a node's key rotations, walked the whole log: 20 s at
start-up (under the sequencer lock) and 2.2 s per descriptor request at 5M entries. Building
the index reads the log once (about a minute per 10M entries on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'i15c'
down_revision: str | None = 'i15b'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in app.storage.models (LOOKED_UP_KINDS_SQL) when this revision was written.
_WHERE = "kind IN ('config', 'key.rotated', 'oprf_keys')"


def upgrade() -> None:
    op.create_index(
        'ix_log_entry_looked_up_kind',
        'log_entry',
        ['kind', 'idx'],
        unique=False,
        sqlite_where=sa.text(_WHERE),
        postgresql_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index('ix_log_entry_looked_up_kind', table_name='log_entry')
