"""The cache service for hot objects (users, photos, counts).

One interface, two backends: memcached (pymemcache) in production, and on
the embedded default the Redis server it already runs. Both are shared by
every process, so a write invalidates what all of them read. Values are
JSON-able dicts, stored as JSON under a key prefix.

Writers call `invalidate` after the commit that changed what a key holds.
Plain deletion would race with readers: a reader that loaded the row just
before the commit could set the old value back just after the delete, and
it would stay for the whole TTL. `invalidate` instead leaves a tombstone
for HOLD_SECONDS (read as a miss), and readers fill misses with `add_many`
(set only where nothing is stored), which cannot overwrite the tombstone.

The TTL is long, since every write that changes a cached object invalidates
its key.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import orjson
import redis
from pymemcache.exceptions import MemcacheError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEFAULT_TTL = 3600
HOLD_SECONDS = 10  # far longer than a reader's load-then-fill
TOMBSTONE = {"__invalidated__": True}


class CacheError(Exception):
    """An invalidation did not reach the cache: its writer must try again
    (app/platform/aftercommit.py hands it to a task), or readers keep the old value."""


class Cache(ABC):
    @abstractmethod
    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The cached values of those keys that are cached."""

    @abstractmethod
    def set_many(self, values: dict[str, dict], ttl: int = DEFAULT_TTL) -> None: ...

    @abstractmethod
    def add_many(self, values: dict[str, dict], ttl: int = DEFAULT_TTL) -> None:
        """Set the keys that hold nothing (a reader filling its misses)."""

    @abstractmethod
    def delete_many(self, keys: list[str]) -> None: ...

    @abstractmethod
    def invalidate(self, keys: list[str]) -> None:
        """What these keys hold changed: readers miss, and cannot fill them for HOLD_SECONDS.
        Raises CacheError when the tombstones were not written (reads and fills only log)."""

    def check(self) -> None:
        """Raises if the cache cannot be used (for /healthz)."""


class MemcachedCache(Cache):
    def __init__(self, servers: list[str], prefix: str = "shutter:") -> None:
        from pymemcache.client.hash import HashClient

        hosts = []
        for server in servers:
            host, _, port = server.rpartition(":") if ":" in server else (server, "", "11211")
            hosts.append((host, int(port or 11211)))
        self._hosts = hosts
        self._prefix = prefix
        # Short timeouts and no exceptions on a dead node: a cache outage slows
        # reads down (they go to the database) but never fails them.
        options = dict(connect_timeout=0.5, timeout=0.5, use_pooling=True, retry_attempts=1, dead_timeout=5)
        self._client = HashClient(hosts, ignore_exc=True, **options)
        # Invalidations must know when they failed (the writer hands them to a task).
        self._strict = HashClient(hosts, ignore_exc=False, **options)

    def _k(self, key: str) -> str:
        return self._prefix + key

    def get_many(self, keys):
        if not keys:
            return {}
        raw = self._client.get_many([self._k(k) for k in keys]) or {}
        plen = len(self._prefix)
        found = {(k.decode() if isinstance(k, bytes) else k)[plen:]: orjson.loads(v) for k, v in raw.items()}
        return {k: v for k, v in found.items() if v != TOMBSTONE}

    def set_many(self, values, ttl=DEFAULT_TTL):
        if values:
            self._client.set_many({self._k(k): orjson.dumps(v) for k, v in values.items()}, expire=ttl, noreply=True)

    def add_many(self, values, ttl=DEFAULT_TTL):
        # memcached's `add` is atomic: it never overwrites a tombstone or a fresher value.
        for key, value in values.items():
            self._client.add(self._k(key), orjson.dumps(value), expire=ttl, noreply=True)

    def delete_many(self, keys):
        if keys:
            self._client.delete_many([self._k(k) for k in keys], noreply=False)

    def invalidate(self, keys):
        if not keys:
            return
        tombstone = orjson.dumps(TOMBSTONE)
        try:
            failed = self._strict.set_many({self._k(k): tombstone for k in keys}, expire=HOLD_SECONDS, noreply=False)
        except (MemcacheError, OSError) as error:
            raise CacheError(f"tombstones not written: {type(error).__name__}") from error
        if failed:
            raise CacheError(f"{len(failed)} of {len(keys)} tombstones not written")

    def check(self):
        from pymemcache.client.base import Client

        for host in self._hosts:
            Client(host, connect_timeout=1, timeout=1).version()


class RedisCache(Cache):
    """The cache in a Redis server (the embedded default's), under a key prefix.

    As with memcached, a Redis that fails reads as a miss and drops writes:
    reads then go to the database.
    """

    def __init__(self, url: str, prefix: str = "cache:") -> None:
        self._prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _k(self, key: str) -> str:
        return self._prefix + key

    def get_many(self, keys):
        if not keys:
            return {}
        try:
            raw = self._client.mget([self._k(k) for k in keys])
        except RedisError as error:
            log.warning("cache read failed: %s", type(error).__name__)
            return {}
        found = {key: orjson.loads(value) for key, value in zip(keys, raw) if value is not None}
        return {k: v for k, v in found.items() if v != TOMBSTONE}

    def _set(self, values: dict[str, dict], ttl: int, only_if_empty: bool) -> None:
        if not values:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(self._k(key), orjson.dumps(value), ex=ttl, nx=only_if_empty)
        try:
            pipe.execute()
        except RedisError as error:
            log.warning("cache write failed: %s", type(error).__name__)

    def set_many(self, values, ttl=DEFAULT_TTL):
        self._set(values, ttl, only_if_empty=False)

    def add_many(self, values, ttl=DEFAULT_TTL):
        # SET NX is atomic, as memcached's `add`: it never overwrites a tombstone or a fresher value.
        self._set(values, ttl, only_if_empty=True)

    def delete_many(self, keys):
        if keys:
            try:
                self._client.delete(*(self._k(k) for k in keys))
            except RedisError as error:
                log.warning("cache delete failed: %s", type(error).__name__)

    def invalidate(self, keys):
        if not keys:
            return
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.set(self._k(key), orjson.dumps(TOMBSTONE), ex=HOLD_SECONDS)
        try:
            pipe.execute()
        except RedisError as error:
            raise CacheError(f"tombstones not written: {type(error).__name__}") from error

    def check(self):
        self._client.ping()


def cache_from_settings(settings) -> Cache:
    """memcached when MEMCACHED_SERVERS names servers, else the Redis of REDIS_URL."""
    if settings.memcached_servers:
        return MemcachedCache(settings.memcached_servers)
    return RedisCache(settings.redis_url)
