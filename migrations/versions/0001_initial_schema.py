"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 06:43:41.882486
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.storage.types

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_key',
    sa.Column('id', app.storage.types.BigIntId, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('member', sa.Boolean(), nullable=False),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_table('checkpoint',
    sa.Column('size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('size')
    )
    op.create_table('feedback',
    sa.Column('id', app.storage.types.BigIntId, nullable=False),
    sa.Column('uid', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('signal_origin', sa.String(length=253), nullable=False),
    sa.Column('signal_uid', sa.String(length=64), nullable=False),
    sa.Column('verdict', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_from', sa.String(length=253), nullable=True),
    sa.Column('submitted_by', sa.BigInteger(), nullable=True),
    sa.Column('change_seq', sa.BigInteger(), nullable=False),
    sa.Column('record', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('origin', 'uid', name='uq_feedback_origin_uid')
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_signal_uid'), ['signal_uid'], unique=False)

    op.create_table('log_entry',
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=32), nullable=True),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('idx')
    )
    op.create_table('log_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('log_node',
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('level', 'idx')
    )
    op.create_table('signal',
    sa.Column('id', app.storage.types.BigIntId, nullable=False),
    sa.Column('uid', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=253), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.Column('match_key', sa.String(length=640), nullable=False),
    sa.Column('attrs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('categories', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('indicators', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('opinion', sa.String(length=32), nullable=False),
    sa.Column('confidence', sa.Integer(), nullable=False),
    sa.Column('reviewed', sa.Boolean(), nullable=False),
    sa.Column('tlp', sa.String(length=8), nullable=False),
    sa.Column('audience_peers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('audience_hops', sa.Integer(), nullable=False),
    sa.Column('valid_from', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('valid_until', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('retracted_at', app.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retract_reason', sa.Text(), nullable=True),
    sa.Column('retraction', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('change_seq', sa.BigInteger(), nullable=False),
    sa.Column('received_from', sa.String(length=253), nullable=True),
    sa.Column('hops', sa.Integer(), nullable=False),
    sa.Column('submitted_by', sa.BigInteger(), nullable=True),
    sa.Column('feedback_counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('feedback_status', sa.String(length=16), nullable=False),
    sa.Column('record', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('origin', 'uid', name='uq_signal_origin_uid')
    )
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signal_change_seq'), ['change_seq'], unique=False)
        batch_op.create_index('ix_signal_match_key_status', ['match_key', 'status'], unique=False)
        batch_op.create_index('ix_signal_status_valid_until', ['status', 'valid_until'], unique=False)
        batch_op.create_index('ix_signal_type_status', ['type', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_signal_uid'), ['uid'], unique=False)

    # The sequencer row every write transaction locks (see app/storage/db.py).
    op.execute("INSERT INTO log_head (id, size) VALUES (1, 0)")


def downgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signal_uid'))
        batch_op.drop_index('ix_signal_type_status')
        batch_op.drop_index('ix_signal_status_valid_until')
        batch_op.drop_index('ix_signal_match_key_status')
        batch_op.drop_index(batch_op.f('ix_signal_change_seq'))

    op.drop_table('signal')
    op.drop_table('log_node')
    op.drop_table('log_head')
    op.drop_table('log_entry')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_signal_uid'))

    op.drop_table('feedback')
    op.drop_table('checkpoint')
    op.drop_table('api_key')
