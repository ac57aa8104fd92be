"""outbox rows keep the request id of the request (or task) that promised them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:00:00

A row the sweeper publishes later (the broker was down after the commit) is
published with the request id it was promised under, in the task's headers, so
the upload's id still follows its photo through the workers' log lines
(app/platform/outbox.py). Null for rows written before, and for the sweeper's own.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('request_id')
