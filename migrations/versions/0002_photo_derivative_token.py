"""photos.derivative_token: an unguessable part in each photo's derivative keys

Revision ID: 0002
Revises: 0001
"""
import secrets

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.add_column(sa.Column('derivative_token', sa.String(length=32), nullable=True))
    # Photos not processed yet get a token now; processed ones keep their stored keys
    # (photos/<id>/<size>.jpg, listed in `derivatives`) and a NULL token.
    photos = sa.table('photos', sa.column('id', sa.BigInteger()), sa.column('status', sa.String()),
                      sa.column('derivative_token', sa.String()))
    connection = op.get_bind()
    pending = connection.execute(sa.select(photos.c.id).where(photos.c.status == 'processing')).scalars().all()
    for photo_id in pending:
        connection.execute(photos.update().where(photos.c.id == photo_id)
                           .values(derivative_token=secrets.token_hex(16)))


def downgrade() -> None:
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.drop_column('derivative_token')
