"""real-time subscriptions: failure counts, disabling, and the photos each was told about

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:20:00

A subscription whose callback keeps failing is disabled (failures, last_error,
disabled_at); subscription_deliveries records each photo announced to each
subscription, so a notification task that runs twice announces it once
(app/realtime/subscriptions.py; the sweeper purges them after OUTBOX_RETENTION_HOURS). Geography subscriptions near a photo are found
through a latitude band (ix_subscriptions_object_latitude).
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_error', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'subscription_deliveries',
        sa.Column('subscription_id', sa.BigInteger(), nullable=False),
        sa.Column('photo_id', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['photo_id'], ['photos.id'],
                                name=op.f('fk_subscription_deliveries_photo_id_photos'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'],
                                name=op.f('fk_subscription_deliveries_subscription_id_subscriptions'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('subscription_id', 'photo_id', name=op.f('pk_subscription_deliveries')),
    )
    # A new table is empty: no CONCURRENTLY needed for its own index.
    op.create_index(op.f('ix_subscription_deliveries_photo_id'), 'subscription_deliveries', ['photo_id'],
                    unique=False)
    op.create_index('ix_subscription_deliveries_created_at', 'subscription_deliveries', ['created_at'],
                    unique=False)
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():  # CONCURRENTLY: subscriptions stay writable meanwhile
            op.create_index('ix_subscriptions_object_latitude', 'subscriptions', ['object', 'latitude'],
                            unique=False, postgresql_concurrently=True, if_not_exists=True)
    else:
        op.create_index('ix_subscriptions_object_latitude', 'subscriptions', ['object', 'latitude'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_subscriptions_object_latitude', table_name='subscriptions')
    op.drop_index('ix_subscription_deliveries_created_at', table_name='subscription_deliveries')
    op.drop_index(op.f('ix_subscription_deliveries_photo_id'), table_name='subscription_deliveries')
    op.drop_table('subscription_deliveries')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('failures')
