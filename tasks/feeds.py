"""The feed queue: fan-out, removal and celebrity crossings, one chunk of
followers per task, and the Redis work that must follow a commit
(app/platform/aftercommit.py).

A huge follower list never becomes one giant task: each task writes one
chunk (FANOUT_CHUNK followers) in one Redis round trip, then promises the
next chunk through the outbox, so a refused broker or a killed worker between
chunks resumes where it stopped. Thin wrappers over app.feeds.manager.FeedManager.
Every task here is safe to run twice or late, and is retried while Redis is down.
"""
from __future__ import annotations

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.engagement import activity
from app.platform.cache import CacheError
from app.services import services
from app.worker import ContextTask
from models import Like, Photo


class FeedTask(ContextTask):
    abstract = True
    autoretry_for = (RedisError, CacheError, OperationalError, BrokerError, ConnectionError, TimeoutError)
    # Until Redis answers: these rows are marked delivered once published, so a
    # task that gave up would lose a follow-up that must happen (backoff caps at 2 min).
    max_retries = None
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True


@shared_task(base=FeedTask, name="tasks.feeds.fan_out")
def fan_out(photo_id: int, after: int = 0) -> None:
    """`after`: the follow id the previous chunk ended at (0: the first chunk)."""
    services.feeds.fan_out_step(photo_id, after)


@shared_task(base=FeedTask, name="tasks.feeds.remove_photo")
def remove_photo(photo_id: int, user_id: int, after: int = 0) -> None:
    services.feeds.remove_photo_step(photo_id, user_id, after)


@shared_task(base=FeedTask, name="tasks.feeds.celebrity_crossed")
def celebrity_crossed(user_id: int, after: int = 0) -> None:
    services.feeds.celebrity_crossed_step(user_id, after)


@shared_task(base=FeedTask, name="tasks.feeds.follow_started")
def follow_started(follower_id: int, followee_id: int) -> None:
    services.feeds.follow_started(follower_id, followee_id)


@shared_task(base=FeedTask, name="tasks.feeds.follow_ended")
def follow_ended(follower_id: int, followee_id: int) -> None:
    services.feeds.follow_ended(follower_id, followee_id)


@shared_task(base=FeedTask, name="tasks.feeds.publish_activity")
def publish_activity(added: list, removed: list) -> None:
    """Activity ids that Redis missed after their commit (app.engagement.activity.publish)."""
    activity.publish(services.redis, added, removed)


@shared_task(base=FeedTask, name="tasks.feeds.liked_changed")
def liked_changed(user_id: int, photo_id: int, liked: bool) -> None:
    """A like or unlike that liked:{user} missed after its commit. The table
    says what is true now (`liked` may have been undone since)."""
    with services.db.session() as session:  # not a replica: it may lag the commit
        liked = session.scalar(select(Like.id).where(Like.user_id == user_id, Like.photo_id == photo_id)) is not None
    services.rendered.liked(user_id, photo_id, liked)


@shared_task(base=FeedTask, name="tasks.feeds.photo_listed")
def photo_listed(photo_id: int, owner_id: int, tags: list[str], location_id: int | None, listed: bool) -> None:
    """A warm lists' patch missed after its commit (app.reads.lists). The table says
    what is true now (the photo may have been deleted since)."""
    with services.db.session() as session:
        listed = session.scalar(select(Photo.id).where(Photo.id == photo_id, Photo.status == "ready")) is not None
    services.lists.photo_listed(photo_id, owner_id, tags, location_id, listed)


@shared_task(base=FeedTask, name="tasks.feeds.like_listed")
def like_listed(user_id: int, like_id: int, photo_id: int, liked: bool) -> None:
    """As photo_listed, for a like's member of the liker's list."""
    with services.db.session() as session:
        liked = session.scalar(select(Like.id).where(Like.id == like_id)) is not None
    services.lists.like_listed(user_id, like_id, photo_id, liked)


@shared_task(base=FeedTask, name="tasks.feeds.invalidate_cache")
def invalidate_cache(keys: list[str]) -> None:
    """Cache keys whose invalidation failed after their commit (app.platform.aftercommit)."""
    services.cache.invalidate(keys)


@shared_task(base=FeedTask, name="tasks.feeds.forget_tokens")
def forget_tokens(hashes: list[str]) -> None:
    """Revoked tokens whose cached lookups Redis missed after the revoking commit."""
    services.tokens.forget(hashes)


@shared_task(base=FeedTask, name="tasks.feeds.forget_photos")
def forget_photos(photo_ids: list[int]) -> None:
    services.rendered.forget_photos(photo_ids)


@shared_task(base=FeedTask, name="tasks.feeds.forget_users")
def forget_users(user_ids: list[int]) -> None:
    services.rendered.forget_users(user_ids)


@shared_task(base=FeedTask, name="tasks.feeds.forget_profiles")
def forget_profiles(user_ids: list[int]) -> None:
    services.profiles.forget(user_ids)


@shared_task(base=FeedTask, name="tasks.feeds.forget_follow_lists")
def forget_follow_lists(user_ids: list[int]) -> None:
    services.social_lists.forget_follow_lists(user_ids)


@shared_task(base=FeedTask, name="tasks.feeds.relations_changed")
def relations_changed(user_ids: list[int]) -> None:
    services.graph.relations_changed(user_ids)


@shared_task(base=FeedTask, name="tasks.feeds.privacy_changed")
def privacy_changed(user_id: int) -> None:
    services.graph.privacy_changed(user_id)
