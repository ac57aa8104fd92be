"""The feed queue: fan-out, removal and celebrity crossings, one chunk of followers per task.

A huge follower list never becomes one giant task: each task writes one
chunk (FANOUT_CHUNK followers) in one Redis round trip, then promises the
next chunk through the outbox, so a refused broker or a killed worker between
chunks resumes where it stopped. Thin wrappers over app.feeds.FeedManager.
"""
from __future__ import annotations

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from tasks import celery, services


class FeedTask(celery.Task):
    abstract = True
    autoretry_for = (RedisError, OperationalError, BrokerError, ConnectionError, TimeoutError)
    max_retries = 8
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True


@celery.task(base=FeedTask, name="tasks.feeds.fan_out")
def fan_out(photo_id: int, after: int = 0) -> None:
    """`after`: the follow id the previous chunk ended at (0: the first chunk)."""
    services().feeds.fan_out_step(photo_id, after)


@celery.task(base=FeedTask, name="tasks.feeds.remove_photo")
def remove_photo(photo_id: int, user_id: int, after: int = 0) -> None:
    services().feeds.remove_photo_step(photo_id, user_id, after)


@celery.task(base=FeedTask, name="tasks.feeds.celebrity_crossed")
def celebrity_crossed(user_id: int, after: int = 0) -> None:
    services().feeds.celebrity_crossed_step(user_id, after)
