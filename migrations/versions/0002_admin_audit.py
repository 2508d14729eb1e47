"""Admin tools: the audit log, and ledger rows for adjustments (a reason, no action).

Revision ID: 0002_admin_audit
Revises: 0001_initial
Create Date: 2026-11-23 03:15:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002_admin_audit'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('actor_ip', sa.String(length=45), nullable=True),
    sa.Column('act', sa.String(length=32), nullable=False),
    sa.Column('target_user', sa.String(length=64), nullable=True),
    sa.Column('target_completion', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('details', sa.String(length=2000), server_default='{}', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_target_user'), ['target_user'], unique=False)

    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=500), nullable=True))
        batch_op.alter_column('action_key', existing_type=sa.String(length=64), nullable=True)


def downgrade():
    op.execute("DELETE FROM completions WHERE action_key IS NULL")
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.alter_column('action_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column('reason')

    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_target_user'))

    op.drop_table('audit_log')
