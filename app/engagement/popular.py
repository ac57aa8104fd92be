"""/media/popular: recent public photos ranked by engagement with time decay.

Computed periodically (celery beat, `tasks.maintenance.compute_popular`),
not per request: the ranking goes into the Redis sorted set `popular`, which
the endpoint reads and hydrates. The new ranking is written under a
temporary key and RENAMEd over the old one, so readers never see half of it.

    score = (likes + 2·comments) / (age_hours + 2) ** 1.5

(comments cost more effort than a tap, and the +2 keeps a brand-new photo
with one like from outranking everything.)
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.platform.keys import POPULAR
from models import Photo, User, utcnow

WINDOW = timedelta(hours=48)
SIZE = 200  # ranked photos kept
CANDIDATES = 5000  # the most engaged recent photos considered


def score(likes: int, comments: int, age_hours: float) -> float:
    return (likes + 2 * comments) / (max(age_hours, 0.0) + 2) ** 1.5


def compute(session: Session, redis, now: datetime | None = None) -> int:
    """Rank the recent public photos into Redis; returns how many were ranked."""
    now = now or utcnow()
    cutoff = now - WINDOW
    rows = session.execute(
        select(Photo.id, Photo.like_count, Photo.comment_count, Photo.created_at)
        .join(User, User.id == Photo.user_id)
        # updated_at is set when a photo becomes ready and never after: the index bounds the scan.
        .where(Photo.status == "ready", Photo.updated_at >= cutoff, Photo.created_at >= cutoff,
               User.is_private.is_(False), (Photo.like_count + Photo.comment_count) > 0)
        .order_by((Photo.like_count + 2 * Photo.comment_count).desc())
        .limit(CANDIDATES)
    ).all()
    ranked = sorted(
        ((score(r.like_count, r.comment_count, (now - r.created_at).total_seconds() / 3600), r.id) for r in rows),
        reverse=True,
    )[:SIZE]
    if not ranked:
        redis.delete(POPULAR)
        return 0
    staging = f"{POPULAR}:next"
    pipe = redis.pipeline(transaction=True)
    pipe.delete(staging)
    pipe.zadd(staging, {str(photo_id): value for value, photo_id in ranked})
    pipe.rename(staging, POPULAR)
    pipe.execute()
    return len(ranked)


def ranked_ids(redis, limit: int) -> list[int]:
    """The best `limit` photo ids of the last computation, best first."""
    return [int(m) for m in redis.zrevrange(POPULAR, 0, limit - 1)]
