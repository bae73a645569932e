"""signal.value as unbounded text: a vpdq value holds one line per video frame

Revision ID: i14a
Revises: i9a
Create Date: 2026-12-03 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = 'i14a'
down_revision: str | None = 'i9a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL: varchar -> text needs no table rewrite. SQLite: batch mode copies the table.
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.alter_column(
            'value', existing_type=sa.String(length=512), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.alter_column(
            'value', existing_type=sa.Text(), type_=sa.String(length=512), existing_nullable=False
        )
