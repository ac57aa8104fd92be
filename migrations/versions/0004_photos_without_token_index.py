"""a partial index of the photos still without a derivative token

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:50:00

The sweeper moves photos processed before tokens existed a batch a minute
(app/media/rekey.py); this index keeps that query from scanning every photo once
none is left.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

WHERE = sa.text("derivative_token IS NULL")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():  # CONCURRENTLY: uploads go on meanwhile
            op.create_index("ix_photos_without_token", "photos", ["id"], unique=False, postgresql_where=WHERE,
                            postgresql_concurrently=True, if_not_exists=True)
    else:
        op.create_index("ix_photos_without_token", "photos", ["id"], unique=False, sqlite_where=WHERE)


def downgrade() -> None:
    op.drop_index("ix_photos_without_token", table_name="photos")
