"""peer.delivered_upto: how far in our log a peer has been delivered records (issue 9)

A `delivered` log entry is written only for records past this mark, so a peer that re-pulls
`after=0` cannot grow our log.

Revision ID: i9a
Revises: i15a
Create Date: 2026-12-03 09:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = 'i9a'
down_revision: str | None = 'i15a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('peer') as batch:
        batch.add_column(
            sa.Column('delivered_upto', sa.BigInteger(), nullable=False, server_default='0')
        )


def downgrade() -> None:
    with op.batch_alter_table('peer') as batch:
        batch.drop_column('delivered_upto')
