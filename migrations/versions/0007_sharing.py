"""sharing to Twitter and Facebook: the shares table, and the activity notice of a revoked link

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00

shares holds one row per (photo, network): the intent to post, claimed by a
conditional UPDATE of its status, and the remote id once posted, so a share
task run twice or retried posts at most once (app/sharing/service.py).
activities.type grows to 40 characters for `linked_account_revoked`, and
activities.detail says which network it was.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shares',
        sa.Column('photo_id', sa.BigInteger(), nullable=False),
        sa.Column('network', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('remote_id', sa.String(length=100), nullable=True),
        sa.Column('last_error', sa.String(length=300), nullable=True),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_shares_photo_id_photos'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('photo_id', 'network', name=op.f('pk_shares')),
    )
    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.alter_column('type', existing_type=sa.String(length=20), type_=sa.String(length=40),
                              existing_nullable=False)
        batch_op.add_column(sa.Column('detail', sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM activities WHERE type = 'linked_account_revoked'")
    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.drop_column('detail')
        batch_op.alter_column('type', existing_type=sa.String(length=40), type_=sa.String(length=20),
                              existing_nullable=False)
    op.drop_table('shares')
