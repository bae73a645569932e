"""StopNCII route: pages served per feed key, and each signal's first log index

Revision ID: i18a
Revises: 0002
Create Date: 2026-12-03 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.storage.types

revision: str = 'i18a'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stopncii_page',
    sa.Column('key_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('set_ts', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('walk', sa.BigInteger(), nullable=False),
    sa.Column('start_seq', sa.BigInteger(), nullable=False),
    sa.Column('end_seq', sa.BigInteger(), nullable=False),
    sa.Column('log_size', sa.BigInteger(), nullable=False),
    sa.Column('issued_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key_id', 'set_ts')
    )
    with op.batch_alter_table('stopncii_page', schema=None) as batch_op:
        batch_op.create_index('ix_stopncii_page_walk_end', ['key_id', 'walk', 'end_seq'], unique=False)
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_seq', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.drop_column('created_seq')
    with op.batch_alter_table('stopncii_page', schema=None) as batch_op:
        batch_op.drop_index('ix_stopncii_page_walk_end')
    op.drop_table('stopncii_page')
