"""Progress of `signet import` runs (import_progress)

Revision ID: i15b
Revises: i11a
Create Date: 2026-12-03 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.storage.types

revision: str = 'i15b'
down_revision: str | None = 'i11a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('import_progress',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('byte_offset', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.BigInteger(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('duplicate', sa.BigInteger(), nullable=False),
    sa.Column('rejected', sa.BigInteger(), nullable=False),
    sa.Column('skipped', sa.BigInteger(), nullable=False),
    sa.Column('started_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('digest')
    )


def downgrade() -> None:
    op.drop_table('import_progress')
