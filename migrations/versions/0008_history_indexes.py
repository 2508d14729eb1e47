"""A user's history, newest first: one time-ordered index of the user's rows per kind of change (claims,
adjustments, voids), so a history page reads about as many rows as it shows.

Revision ID: 0008_history_indexes
Revises: 0007_period_outbox
Create Date: 2026-12-03 18:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008_history_indexes'
down_revision = '0007_period_outbox'
branch_labels = None
depends_on = None

# name -> (columns, predicate)
INDEXES = {
    'ix_completions_user_claims': (['user_id', 'claimed_at', 'id'], 'claimed_at IS NOT NULL'),
    'ix_completions_user_adjustments': (['user_id', 'created_at', 'id'], "status = 'adjustment'"),
    'ix_completions_user_voids': (['user_id', 'voided_at', 'id'], "status = 'void'"),
}


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # Built without locking out claims on a ledger that may hold millions of rows.
        with op.get_context().autocommit_block():
            for name, (columns, predicate) in INDEXES.items():
                op.create_index(name, 'completions', columns, unique=False,
                                postgresql_where=sa.text(predicate), postgresql_concurrently=True)
    else:
        for name, (columns, predicate) in INDEXES.items():
            op.create_index(name, 'completions', columns, unique=False, sqlite_where=sa.text(predicate))


def downgrade():
    for name in INDEXES:
        op.drop_index(name, table_name='completions')
