"""Migrations keep data both ways (SQLite's batch mode recreates tables)."""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from app.config import ROOT


def _config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    return config


def test_sqlite_downgrade_and_upgrade_keep_every_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = _config(url)
    command.upgrade(config, "head")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO users (id, username, username_key, email, email_key, password_hash, full_name, bio,"
            " website, is_private, media_count, follows_count, followed_by_count, created_at)"
            " VALUES (1, 'a', 'a', 'a@x.org', 'a@x.org', 'h', '', '', '', 0, 1, 0, 0, '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO photos (id, user_id, shortcode, status, filter, original_key, original_content_type,"
            " like_count, comment_count, attempts, created_at, updated_at)"
            " VALUES (2, 1, 'B', 'ready', 'Normal', 'originals/2.jpg', 'image/jpeg', 0, 0, 0,"
            " '2026-01-01', '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO comments (id, photo_id, user_id, text, created_at) VALUES (3, 2, 1, 'hi', '2026-01-01')"))
    # Dropping a column recreates `photos` and `users`: their children must survive it.
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
    with engine.connect() as connection:
        counts = [connection.scalar(text(f"SELECT count(*) FROM {table}")) for table in ("users", "photos", "comments")]
    engine.dispose()
    assert counts == [1, 1, 1]
