"""Drop ix_received_record_digest: no query reads received records by digest

Revision ID: i15d
Revises: i15c
Create Date: 2026-12-05 07:45:00

A received record is looked up only by (origin, kind, id, version), its unique key, to apply
a page idempotently; reconciling nodes compares their logs, never this table. The index cost
every received record an index insert and about 84 bytes of disk (3 % of a received md5
signal's footprint on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = 'i15d'
down_revision: str | None = 'i15c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_received_record_digest', table_name='received_record')


def downgrade() -> None:
    op.create_index('ix_received_record_digest', 'received_record', ['digest'], unique=False)
