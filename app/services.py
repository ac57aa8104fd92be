"""The services that routes and tasks share, built once per process.

Each is made on first use, so a process connects only to what it needs.
Routes reach them through `services` (the current app's container); tasks
through `tasks.services()`.
"""
from __future__ import annotations

from functools import cached_property

import redis
from flask import current_app
from werkzeug.local import LocalProxy

from app.config import Settings
from models import Database


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        from app.aftercommit import SERVICES

        # Its sessions carry this container, for the steps that follow their commits.
        return Database(self.settings.database_url, self.settings.database_replica_urls,
                        session_info={SERVICES: self})

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url, decode_responses=True, socket_timeout=5, health_check_interval=30
        )

    @cached_property
    def storage(self):
        from app.storage import storage_from_settings

        return storage_from_settings(self.settings)

    @cached_property
    def cache(self):
        from app.cache import cache_from_settings

        return cache_from_settings(self.settings)

    @cached_property
    def feeds(self):
        from app.feeds import FeedManager

        return FeedManager(self.redis, self.db, self.settings, celery=self.celery)

    @cached_property
    def rendered(self):
        from app.rendered import RenderedFeed

        return RenderedFeed(self.redis, self.feeds)

    @cached_property
    def passwords(self):
        from app.auth import PasswordService

        s = self.settings
        return PasswordService(s.argon2_time_cost, s.argon2_memory_cost_kib, s.argon2_parallelism)

    @cached_property
    def tokens(self):
        from app.auth import TokenService

        return TokenService(self.redis, self.settings.token_cache_seconds, presence=self.presence)

    @cached_property
    def presence(self):
        from app.presence import Presence

        return Presence(self.feeds)

    @cached_property
    def celery(self):
        """Publishes tasks to this settings' broker (workers have their own app)."""
        from tasks import make_celery

        return make_celery(self.settings)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
        if "redis" in self.__dict__:
            self.redis.close()


services: Services = LocalProxy(lambda: current_app.extensions["shutter"])  # type: ignore[assignment]
