"""federation: peers, nonces, witness state, cosignatures, equivocation evidence, received records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:06:43.232215
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.storage.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cosignature',
    sa.Column('size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('witness', sa.String(length=253), nullable=False),
    sa.Column('line', sa.Text(), nullable=False),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('size', 'witness')
    )
    op.create_table('equivocation',
    sa.Column('id', app.storage.types.BigIntId, nullable=False),
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('cosigned_note', sa.Text(), nullable=False),
    sa.Column('conflicting_note', sa.Text(), nullable=False),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('equivocation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_equivocation_origin'), ['origin'], unique=False)

    op.create_table('http_nonce',
    sa.Column('keyid', sa.String(length=255), nullable=False),
    sa.Column('nonce', sa.String(length=256), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('keyid', 'nonce')
    )
    with op.batch_alter_table('http_nonce', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_http_nonce_expires_at'), ['expires_at'], unique=False)

    op.create_table('peer',
    sa.Column('id', app.storage.types.BigIntId, nullable=False),
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('verifier_key', sa.String(length=512), nullable=False),
    sa.Column('policy', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('added_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('removed_at', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('remote_size', sa.BigInteger(), nullable=False),
    sa.Column('last_attempt', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_success', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('records_received', sa.BigInteger(), nullable=False),
    sa.Column('records_refused', sa.BigInteger(), nullable=False),
    sa.Column('records_delivered', sa.BigInteger(), nullable=False),
    sa.Column('witness_size', sa.BigInteger(), nullable=False),
    sa.Column('witness_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('origin')
    )
    op.create_table('received_record',
    sa.Column('id', app.storage.types.BigIntId, nullable=False),
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('received_from', sa.String(length=253), nullable=False),
    sa.Column('log_idx', sa.BigInteger(), nullable=False),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('origin', 'kind', 'rid', 'version', name='uq_received_record')
    )
    with op.batch_alter_table('received_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_record_digest'), ['digest'], unique=False)

    op.create_table('witness_state',
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('updated_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('origin')
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_change_seq'), ['change_seq'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_change_seq'))

    op.drop_table('witness_state')
    with op.batch_alter_table('received_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_record_digest'))

    op.drop_table('received_record')
    op.drop_table('peer')
    with op.batch_alter_table('http_nonce', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_http_nonce_expires_at'))

    op.drop_table('http_nonce')
    with op.batch_alter_table('equivocation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_equivocation_origin'))

    op.drop_table('equivocation')
    op.drop_table('cosignature')
