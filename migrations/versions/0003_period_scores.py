"""Period boards: each user's score per day, ISO week and month; when a completion was voided.

Revision ID: 0003_period_scores
Revises: 0002_admin_audit
Create Date: 2026-12-02 03:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0003_period_scores'
down_revision = '0002_admin_audit'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('period_scores',
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('score', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reached_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('board_pending', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_period_scores_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('period', 'user_id', name=op.f('pk_period_scores'))
    )
    with op.batch_alter_table('period_scores', schema=None) as batch_op:
        batch_op.create_index('ix_period_scores_rank', ['period', sa.literal_column('score DESC'), sa.literal_column('reached_at ASC'), sa.literal_column('user_id DESC')], unique=False)
        batch_op.create_index('ix_period_scores_user', ['user_id'], unique=False)
        batch_op.create_index('ix_period_scores_board_pending', ['period', 'user_id'], unique=False, postgresql_where=sa.text('board_pending'), sqlite_where=sa.text('board_pending'))
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_column('voided_at')
    with op.batch_alter_table('period_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_period_scores_board_pending', postgresql_where=sa.text('board_pending'), sqlite_where=sa.text('board_pending'))
        batch_op.drop_index('ix_period_scores_user')
        batch_op.drop_index('ix_period_scores_rank')
    op.drop_table('period_scores')
