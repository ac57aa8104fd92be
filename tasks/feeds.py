"""The feed queue: fan-out and removal, one chunk of followers per task.

A huge follower list never becomes one giant task: each task writes one
chunk (app.feeds.CHUNK) in one Redis round trip, then enqueues the next
chunk itself. Thin wrappers over app.feeds.FeedManager.
"""
from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from tasks import celery, services


class FeedTask(celery.Task):
    abstract = True
    autoretry_for = (RedisError, OperationalError, ConnectionError, TimeoutError)
    max_retries = 8
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True


@celery.task(base=FeedTask, name="tasks.feeds.fan_out")
def fan_out(photo_id: int, after: int = 0) -> None:
    """`after`: the follow id the previous chunk ended at (0: the first chunk)."""
    following = services().feeds.fan_out(photo_id, after)
    if following is not None:
        fan_out.apply_async((photo_id, following))


@celery.task(base=FeedTask, name="tasks.feeds.remove_photo")
def remove_photo(photo_id: int, user_id: int, after: int = 0) -> None:
    following = services().feeds.remove_photo(photo_id, user_id, after)
    if following is not None:
        remove_photo.apply_async(kwargs={"photo_id": photo_id, "user_id": user_id, "after": following})
