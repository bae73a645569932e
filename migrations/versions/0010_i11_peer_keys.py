"""Keys peers rotated away from (peer_key)

Revision ID: i11a
Revises: i9b
Create Date: 2026-12-03 09:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.storage.types

revision: str = 'i11a'
down_revision: str | None = 'i9b'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('peer_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('verifier_key', sa.String(length=512), nullable=False),
    sa.Column('retired_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('peer_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_peer_key_origin'), ['origin'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('peer_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_peer_key_origin'))
    op.drop_table('peer_key')
