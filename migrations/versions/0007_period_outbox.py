"""The period outbox: completions.period_pending, set by a claim until the board's worker has added its points to
the claim's day, week and month; a partial index of the flagged rows.

Revision ID: 0007_period_outbox
Revises: 0006_admin_console
Create Date: 2026-12-02 05:45:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007_period_outbox'
down_revision = '0006_admin_console'
branch_labels = None
depends_on = None

INDEX = 'ix_completions_period_pending'
PREDICATE = 'period_pending'


def upgrade():
    # A constant default: PostgreSQL adds the column without rewriting the table (and SQLite in place too).
    op.add_column('completions', sa.Column('period_pending', sa.Boolean(), server_default=sa.text('false'),
                                           nullable=False))
    if op.get_bind().dialect.name == 'postgresql':
        # Built without locking out claims on a ledger that may hold millions of rows (none of them flagged yet).
        with op.get_context().autocommit_block():
            op.create_index(INDEX, 'completions', ['claimed_at'], unique=False,
                            postgresql_where=sa.text(PREDICATE), postgresql_concurrently=True)
    else:
        op.create_index(INDEX, 'completions', ['claimed_at'], unique=False, sqlite_where=sa.text(PREDICATE))


def downgrade():
    op.drop_index(INDEX, table_name='completions')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_column('completions', 'period_pending')
    else:
        # In place (SQLite 3.35+): a batch copy of the table would lose the analytics' expression index.
        op.execute('ALTER TABLE completions DROP COLUMN period_pending')
