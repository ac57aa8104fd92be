"""push: devices' environment, topic and registration time; muted notification kinds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:50:00

A device is registered for APNs' sandbox or production (environment) and an app
(topic, or APNS_TOPIC when null); updated_at is when it was last registered, so
APNs' 410 (Unregistered since <timestamp>) removes only a device not registered
again since. muted_notifications holds the kinds of push a user switched off.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('environment', sa.String(length=10), nullable=False,
                                      server_default='production'))
        batch_op.add_column(sa.Column('topic', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False,
                                      server_default=sa.func.current_timestamp()))
    op.create_table(
        'muted_notifications',
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_muted_notifications_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'kind', name=op.f('pk_muted_notifications')),
    )


def downgrade() -> None:
    op.drop_table('muted_notifications')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
        batch_op.drop_column('topic')
        batch_op.drop_column('environment')
