"""Who is active: users.last_active_at, recorded cheaply.

A user is seen when one of their tokens is resolved from the database, which
happens at least every TOKEN_CACHE_SECONDS while they use the API (the warm
feed read, served from the token cache, writes nothing). The column is bumped
at most once a day (BUMP_EVERY); a bump also keeps their feed alive, or drops
it if they had been away long enough for fan-out to skip them (FeedManager).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from models import User, begin_write, utcnow

BUMP_EVERY = timedelta(days=1)
# Dropped a little before fan-out starts skipping them: clocks of web and
# worker hosts may differ, and a needless rebuild costs one query.
RETURN_MARGIN = timedelta(hours=1)


class Presence:
    def __init__(self, feeds) -> None:
        self.feeds = feeds  # app.feeds.manager.FeedManager

    def seen(self, session: Session, user_id: int, last_active_at: datetime | None) -> None:
        """A token of the user's was resolved from the database (`session` holds nothing pending)."""
        now = utcnow()
        if last_active_at is not None and last_active_at > now - BUMP_EVERY:
            return
        returning = last_active_at is None or last_active_at < self.feeds.active_since(now) + RETURN_MARGIN
        # The feed first: were the bump committed and this to fail, a stale feed would stay.
        self.feeds.owner_seen(user_id, returning)
        begin_write(session)  # a GET's session only reads (SQLite: no write lock until here)
        session.execute(update(User).where(User.id == user_id).values(last_active_at=now))
        session.commit()
