"""The suite runs against real components, on one of two stacks:

- SHUTTER_TEST_STACK=production: PostgreSQL, Redis and RabbitMQ, the local
  servers (TEST_DATABASE_URL, TEST_REDIS_URL, TEST_BROKER_URL override them);
- SHUTTER_TEST_STACK=embedded (the default): SQLite and an embedded
  redis-server that this file starts, as `make run` does.

A service that cannot be reached fails the run with a message naming it.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from app import create_app
from app.config import ROOT, Settings
from models import Base, make_engine
from tests.support import Shutter

pytest_plugins = ["tests.s3_server", "tests.workers", "tests.live_server", "tests.solr_server", "tests.oauth_providers",
                  "tests.apns_server"]

STACK = os.environ.get("SHUTTER_TEST_STACK", "embedded")
MEMCACHED_SERVER = os.environ.get("TEST_MEMCACHED_SERVERS", "127.0.0.1:11211")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    if not _reachable(url, default_port):
        pytest.exit(f"{name} is unreachable at {urlsplit(url).hostname}:{urlsplit(url).port or default_port} "
                    f"(see ../shared/SERVICES.md to start it)", returncode=3)


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def _reset_postgresql(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def _ensure_pg_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url.replace("+psycopg", ""))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """URLs of the stack under test, migrated and reachable."""
    if STACK == "production":
        urls = {
            "database_url": os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/shutter_test"),
            "redis_url": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
            "celery_broker_url": os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        }
        require_service("PostgreSQL", urls["database_url"], 5432)
        require_service("Redis", urls["redis_url"], 6379)
        require_service("RabbitMQ", urls["celery_broker_url"], 5672)
        require_service("memcached", f"memcached://{MEMCACHED_SERVER}", 11211)
        _ensure_pg_database(urls["database_url"])
        _reset_postgresql(urls["database_url"])
        migrate(urls["database_url"])
        yield {"name": STACK, **urls}
        return
    if STACK != "embedded":
        pytest.exit(f"SHUTTER_TEST_STACK must be production or embedded, not {STACK!r}", returncode=4)
    from app.platform.embedded import EmbeddedRedis

    directory = tmp_path_factory.mktemp("embedded")
    database_url = f"sqlite:///{directory / 'shutter.db'}"
    migrate(database_url)
    embedded = EmbeddedRedis.start(directory / "redis")
    yield {"name": STACK, "database_url": database_url, "redis_url": embedded.url, "celery_broker_url": embedded.url}
    embedded.stop()


@pytest.fixture
def settings(stack, tmp_path) -> Settings:
    return dataclasses.replace(
        Settings(),
        database_url=stack["database_url"],
        redis_url=stack["redis_url"],
        celery_broker_url=stack["celery_broker_url"],
        media_root=str(tmp_path / "media"),
        public_url="http://localhost",
        # Production caches in memcached (MEMCACHED_SERVERS); the embedded stack in-process.
        memcached_servers=[MEMCACHED_SERVER] if STACK == "production" else [],
        # Real argon2id at its cheapest cost (argon2's profiles.CHEAPEST): ~1 ms a
        # hash instead of 50–300 ms, as Django advises for test suites.
        argon2_time_cost=1, argon2_memory_cost_kib=8, argon2_parallelism=1,
    )


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["shutter"].close()


@pytest.fixture
def make_app(settings):
    """create_app with some settings changed; closed at the end of the test."""
    apps = []

    def make(**changes):
        app = create_app(dataclasses.replace(settings, **changes))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["shutter"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def shutter(client) -> Shutter:
    return Shutter(client)


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every test starts with empty tables and an empty Redis."""
    yield
    if "stack" not in request.fixturenames:
        return
    stack = request.getfixturevalue("stack")
    engine = make_engine(stack["database_url"])
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        # DELETE, children first: on a test's few rows it is ~10x faster than TRUNCATE on PostgreSQL.
        for table in tables:
            connection.execute(text(f"DELETE FROM {table}"))
    engine.dispose()
    redis_lib.Redis.from_url(stack["redis_url"]).flushdb()
