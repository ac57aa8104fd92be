"""The cache service for hot objects (users, photos, counts).

One interface, two backends: memcached (pymemcache) in production, an
in-process LRU on the embedded default. Values are JSON-able dicts.

Writers call `invalidate` after the commit that changed what a key holds.
Plain deletion would race with readers: a reader that loaded the row just
before the commit could set the old value back just after the delete, and
it would stay for the whole TTL. `invalidate` instead leaves a tombstone
for HOLD_SECONDS (read as a miss), and readers fill misses with `add_many`
(set only where nothing is stored), which cannot overwrite the tombstone.

The in-process backend cannot be invalidated across processes, so its TTL
is short (IN_PROCESS_TTL); memcached's is long, since every write that
changes a cached object invalidates its key.
"""
from __future__ import annotations

import orjson
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict

DEFAULT_TTL = 3600
IN_PROCESS_TTL = 5
HOLD_SECONDS = 10  # far longer than a reader's load-then-fill
TOMBSTONE = {"__invalidated__": True}


def user_key(user_id: int) -> str:
    return f"u:{user_id}"


def photo_key(photo_id: int) -> str:
    return f"p:{photo_id}"


def media_key(photo_id: int) -> str:
    """A ready photo's media object body, with the ids of the users it shows."""
    return f"m:{photo_id}"


def photo_keys(photo_id: int) -> list[str]:
    """Every key that holds something of a photo: invalidate them all on a change."""
    return [photo_key(photo_id), media_key(photo_id)]


class Cache(ABC):
    # How long a value read from it may outlive the change that made it stale:
    # none for a shared cache (writers invalidate), the TTL for a per-process one.
    staleness = 0

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

    def invalidate(self, keys: list[str]) -> None:
        """What these keys hold changed: readers miss, and cannot fill them for HOLD_SECONDS."""
        if keys:
            self.set_many({key: TOMBSTONE for key in keys}, ttl=HOLD_SECONDS)

    def check(self) -> None:
        """Raises if the cache cannot be used (for /healthz)."""


class LocalCache(Cache):
    """A bounded, thread-safe LRU with a short TTL, for one process."""

    def __init__(self, max_items: int = 10_000, ttl: int = IN_PROCESS_TTL) -> None:
        self.staleness = ttl
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_items = max_items
        self._ttl = ttl

    def get_many(self, keys):
        now = time.monotonic()
        found = {}
        with self._lock:
            for key in keys:
                item = self._items.get(key)
                if item is None:
                    continue
                if item[0] < now:
                    del self._items[key]
                    continue
                self._items.move_to_end(key)
                value = orjson.loads(item[1])
                if value != TOMBSTONE:
                    found[key] = value
        return found

    def set_many(self, values, ttl=DEFAULT_TTL):
        expires = time.monotonic() + min(ttl, self._ttl)
        with self._lock:
            for key, value in values.items():
                self._items[key] = (expires, orjson.dumps(value))  # stored serialised: no shared mutation
                self._items.move_to_end(key)
            while len(self._items) > self._max_items:
                self._items.popitem(last=False)

    def add_many(self, values, ttl=DEFAULT_TTL):
        now = time.monotonic()
        expires = now + min(ttl, self._ttl)
        with self._lock:  # check and set under one lock, as memcached's `add` is atomic
            for key, value in values.items():
                item = self._items.get(key)
                if item is None or item[0] < now:
                    self._items[key] = (expires, orjson.dumps(value))
                    self._items.move_to_end(key)
            while len(self._items) > self._max_items:
                self._items.popitem(last=False)

    def delete_many(self, keys):
        with self._lock:
            for key in keys:
                self._items.pop(key, None)


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
        self._client = HashClient(
            hosts, connect_timeout=0.5, timeout=0.5, use_pooling=True, ignore_exc=True,
            retry_attempts=1, dead_timeout=5,
        )

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

    def check(self):
        from pymemcache.client.base import Client

        for host in self._hosts:
            Client(host, connect_timeout=1, timeout=1).version()


def cache_from_settings(settings) -> Cache:
    if settings.memcached_servers:
        return MemcachedCache(settings.memcached_servers)
    return LocalCache()
