"""indexes for the foreign keys that deletes follow; users.last_active_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:40:00

Without these indexes a delete of a user, photo or comment scans activities
(and a user's or client's delete scans authorization_codes) whole, for the
ON DELETE CASCADE and for the deletes of unlike and unfollow.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEXES = {
    "activities": ["actor_id", "photo_id", "comment_id"],
    "authorization_codes": ["user_id", "client_pk"],
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # CONCURRENTLY, outside a transaction: activities can be large, and a plain
        # CREATE INDEX would block its writes (every like and comment) while it builds.
        with op.get_context().autocommit_block():
            for table, columns in INDEXES.items():
                for column in columns:
                    op.create_index(f"ix_{table}_{column}", table, [column], unique=False,
                                    postgresql_concurrently=True, if_not_exists=True)
    else:
        for table, columns in INDEXES.items():
            with op.batch_alter_table(table, schema=None) as batch_op:
                for column in columns:
                    batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_active_at', sa.DateTime(timezone=True), nullable=True))
    # Everyone counts as active from now: their feeds keep being fanned out to
    # until they have been away FEED_INACTIVE_DAYS.
    op.execute(sa.text("UPDATE users SET last_active_at = CURRENT_TIMESTAMP"))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('last_active_at')
    for table, columns in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
