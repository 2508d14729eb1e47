"""Anomaly detection: refused claims, suspects and their review, the claims of a window by time; the held status.

Revision ID: 0004_anomaly_detection
Revises: 0003_period_scores
Create Date: 2026-12-02 03:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004_anomaly_detection'
down_revision = '0003_period_scores'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('claim_refusals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('client_ip', sa.String(length=45), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_refusals'))
    )
    with op.batch_alter_table('claim_refusals', schema=None) as batch_op:
        batch_op.create_index('ix_claim_refusals_user_at', ['user_id', 'at'], unique=False)
        batch_op.create_index('ix_claim_refusals_at', ['at'], unique=False)
    op.create_table('suspects',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('anomaly_score', sa.Float(), nullable=False),
    sa.Column('flagged_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reasons', sa.Text(), server_default='[]', nullable=False),
    sa.Column('features', sa.Text(), server_default='{}', nullable=False),
    sa.Column('previous_status', sa.String(length=16), nullable=True),
    sa.Column('reviewed_by', sa.String(length=64), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_reason', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_suspects_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_suspects'))
    )
    with op.batch_alter_table('suspects', schema=None) as batch_op:
        batch_op.create_index('ix_suspects_status_flagged', ['status', 'flagged_at'], unique=False)
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.create_index('ix_completions_claimed_at', ['claimed_at'], unique=False)


def downgrade():
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_index('ix_completions_claimed_at')
    with op.batch_alter_table('suspects', schema=None) as batch_op:
        batch_op.drop_index('ix_suspects_status_flagged')
    op.drop_table('suspects')
    with op.batch_alter_table('claim_refusals', schema=None) as batch_op:
        batch_op.drop_index('ix_claim_refusals_at')
        batch_op.drop_index('ix_claim_refusals_user_at')
    op.drop_table('claim_refusals')
