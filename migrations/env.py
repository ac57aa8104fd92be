"""Alembic environment: migrates DATABASE_URL (or the URL a caller set)."""
from logging.config import fileConfig

from alembic import context
from sqlalchemy import event

from app.config import Settings
from models import Base
from models.db import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        # Batch operations recreate a table and drop the old one: with foreign keys on,
        # that drop would cascade-delete every row that references it.
        @event.listens_for(engine, "connect")
        def _foreign_keys_off(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
