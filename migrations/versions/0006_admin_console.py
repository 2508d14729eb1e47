"""Admin console: the user search's indexes (id and name prefixes, names by trigram) and the audit view's
(actor, target user and act, each with the id it pages by).

Revision ID: 0006_admin_console
Revises: 0005_analytics
Create Date: 2026-12-02 05:40:00

"""
import logging

from alembic import op
import sqlalchemy as sa


revision = '0006_admin_console'
down_revision = '0005_analytics'
branch_labels = None
depends_on = None

log = logging.getLogger('alembic.runtime.migration')

# (name, columns) of the audit view's indexes; they replace the one on target_user alone.
AUDIT_INDEXES = (
    ('ix_audit_log_target_id', ['target_user', 'id']),
    ('ix_audit_log_actor_id', ['actor', 'id']),
    ('ix_audit_log_act_id', ['act', 'id']),
)
# Prefix searches as byte-order ranges (text_pattern_ops), whatever the database's collation.
USER_PREFIX_INDEXES = (
    ('ix_users_id_lower', 'lower(id) text_pattern_ops'),
    ('ix_users_display_name_lower', 'lower(display_name) text_pattern_ops'),
)


def _trigrams_available(bind) -> bool:
    """Create pg_trgm if it is missing; False (and a warning) where this role may not."""
    try:
        with bind.begin_nested():
            bind.execute(sa.text('CREATE EXTENSION IF NOT EXISTS pg_trgm'))
        return True
    except sa.exc.DBAPIError as exc:
        log.warning('pg_trgm unavailable (%s): the admin search matches names without an index', exc.orig)
        return False


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        with op.batch_alter_table('audit_log', schema=None) as batch_op:
            batch_op.drop_index(batch_op.f('ix_audit_log_target_user'))
            for name, columns in AUDIT_INDEXES:
                batch_op.create_index(name, columns, unique=False)
        return
    trigrams = _trigrams_available(bind)
    # Built without locking out recordings (users) or admin acts, on tables that may be large.
    with op.get_context().autocommit_block():
        for name, columns in AUDIT_INDEXES:
            op.create_index(name, 'audit_log', columns, unique=False, postgresql_concurrently=True)
        op.drop_index('ix_audit_log_target_user', table_name='audit_log', postgresql_concurrently=True)
        for name, expression in USER_PREFIX_INDEXES:
            op.create_index(name, 'users', [sa.text(expression)], unique=False, postgresql_concurrently=True)
        if trigrams:
            op.create_index('ix_users_display_name_trgm', 'users', ['display_name'], unique=False,
                            postgresql_using='gin', postgresql_ops={'display_name': 'gin_trgm_ops'},
                            postgresql_concurrently=True)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_users_display_name_trgm')
        for name, _expression in USER_PREFIX_INDEXES:
            op.drop_index(name, table_name='users')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        for name, _columns in AUDIT_INDEXES:
            batch_op.drop_index(name)
        batch_op.create_index(batch_op.f('ix_audit_log_target_user'), ['target_user'], unique=False)
    # pg_trgm stays: other objects may use it, and it holds no data.
