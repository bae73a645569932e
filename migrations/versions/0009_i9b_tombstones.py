"""Retraction tombstones: retractions received for signals this node does not hold

Revision ID: i9b
Revises: i10a
Create Date: 2026-12-03 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

import app.storage.types
from sqlalchemy.dialects import postgresql

revision: str = 'i9b'
down_revision: str | None = 'i10a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('retraction_tombstone',
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('uid', sa.String(length=64), nullable=False),
    sa.Column('record', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('received_from', sa.String(length=253), nullable=False),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('origin', 'uid')
    )


def downgrade() -> None:
    op.drop_table('retraction_tombstone')
