"""Analytics: the rollups of the ledger the worker keeps (hours, claim delays, refusals, players, daily
activity, watermarks) and two partial indexes of the ledger that no claim writes to.

Revision ID: 0005_analytics
Revises: 0004_anomaly_detection
Create Date: 2026-12-02 05:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0005_analytics'
down_revision = '0004_anomaly_detection'
branch_labels = None
depends_on = None

# (name, what, predicate) of the ledger's new indexes.
LEDGER_INDEXES = (
    ('ix_completions_unclaimed_created', 'created_at', 'claimed_at IS NULL'),
    ('ix_completions_voided', 'voided_at', "status = 'void'"),
)


def upgrade():
    op.create_table('analytics_state',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_analytics_state'))
    )
    op.create_table('analytics_hours',
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action_key', sa.String(length=64), nullable=False),
    sa.Column('claims', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('points', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('recorded_claimed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('recorded_unclaimed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('void_claimed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('void_unclaimed', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('hour', 'action_key', name=op.f('pk_analytics_hours'))
    )
    op.create_table('analytics_delays',
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('claims', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('hour', 'bucket', name=op.f('pk_analytics_delays'))
    )
    op.create_table('analytics_refusals',
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('refusals', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('hour', 'reason', name=op.f('pk_analytics_refusals'))
    )
    op.create_table('analytics_players',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('first_claim_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_claim_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_analytics_players'))
    )
    with op.batch_alter_table('analytics_players', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_players_first', ['first_claim_at'], unique=False)
        batch_op.create_index('ix_analytics_players_last', ['last_claim_at'], unique=False)
    op.create_table('analytics_activity',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('day', 'user_id', name=op.f('pk_analytics_activity'))
    )
    op.create_table('analytics_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('users', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_analytics_days'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        # Built without locking out claims and recordings on a ledger that may hold millions of rows.
        with op.get_context().autocommit_block():
            for name, what, predicate in LEDGER_INDEXES:
                op.create_index(name, 'completions', [what], unique=False,
                                postgresql_where=sa.text(predicate), postgresql_concurrently=True)
    else:
        for name, what, predicate in LEDGER_INDEXES:
            op.create_index(name, 'completions', [what], unique=False, sqlite_where=sa.text(predicate))


def downgrade():
    for name, _what, _predicate in LEDGER_INDEXES:
        op.drop_index(name, table_name='completions')
    op.drop_table('analytics_days')
    op.drop_table('analytics_activity')
    with op.batch_alter_table('analytics_players', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_players_last')
        batch_op.drop_index('ix_analytics_players_first')
    op.drop_table('analytics_players')
    op.drop_table('analytics_refusals')
    op.drop_table('analytics_delays')
    op.drop_table('analytics_hours')
    op.drop_table('analytics_state')
