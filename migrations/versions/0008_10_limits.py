"""Rate-limit buckets per API key, and one `seen` report per (key, signal)

Revision ID: i10a
Revises: i14a
Create Date: 2026-12-03 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = 'i10a'
down_revision: str | None = 'i14a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rate_bucket',
    sa.Column('key_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('updated', sa.Float(), nullable=False),
    sa.Column('granted', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key_id')
    )
    op.create_table('seen_report',
    sa.Column('key_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('signal_origin', sa.String(length=253), nullable=False),
    sa.Column('signal_uid', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key_id', 'signal_origin', 'signal_uid')
    )


def downgrade() -> None:
    op.drop_table('seen_report')
    op.drop_table('rate_bucket')
