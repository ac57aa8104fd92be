"""The cache service on both backends (a real memcached, and the stack's Redis),
and invalidation seen through the API: a cached photo or user never hides a
committed change.
"""
from __future__ import annotations

import io
import os
import secrets
import socket

import pytest
import redis as redis_lib

from app.media import pipeline
from app.platform.cache import CacheError, MemcachedCache, RedisCache
from app.platform.keys import cached_photo_key, cached_user_key
from tests import images
from tests.support import Shutter, assert_error

MEMCACHED = os.environ.get("TEST_MEMCACHED_SERVERS", "127.0.0.1:11211")


def _memcached_cache() -> MemcachedCache:
    host, _, port = MEMCACHED.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        pytest.fail(f"memcached is unreachable at {MEMCACHED} (apt-get install memcached; see ../shared/SERVICES.md)")
    # A prefix of its own: runs sharing the server never see each other's keys.
    return MemcachedCache([MEMCACHED], prefix=f"test-{secrets.token_hex(4)}:")


def _redis_cache(stack) -> RedisCache:
    return RedisCache(stack["redis_url"], prefix=f"test-{secrets.token_hex(4)}:")


@pytest.fixture(params=["redis", "memcached"])
def cache(request):
    if request.param == "redis":
        return _redis_cache(request.getfixturevalue("stack"))
    return _memcached_cache()


def test_round_trip(cache):
    values = {"u:1": {"id": 1, "username": "alice", "tags": ["a", "b"], "n": None},
              "p:2": {"id": 2, "like_count": 7}}
    cache.set_many(values)
    assert cache.get_many(["u:1", "p:2", "u:3"]) == values
    assert cache.get_many([]) == {}
    cache.set_many({"u:1": {"id": 1, "username": "renamed"}})
    assert cache.get_many(["u:1"]) == {"u:1": {"id": 1, "username": "renamed"}}


def test_delete(cache):
    cache.set_many({"a": {"v": 1}, "b": {"v": 2}})
    cache.delete_many(["a", "missing"])
    assert cache.get_many(["a", "b"]) == {"b": {"v": 2}}
    cache.delete_many([])


def test_add_sets_only_what_holds_nothing(cache):
    cache.set_many({"held": {"v": "fresh"}})
    cache.add_many({"held": {"v": "stale"}, "empty": {"v": 1}})
    assert cache.get_many(["held", "empty"]) == {"held": {"v": "fresh"}, "empty": {"v": 1}}


def test_an_invalidated_key_reads_as_a_miss_that_readers_cannot_fill(cache):
    """The race plain deletion loses: a reader loaded the old row before the
    writer's commit and fills its miss after the writer's invalidation."""
    cache.set_many({"p:1": {"like_count": 0}})
    cache.invalidate(["p:1"])
    assert cache.get_many(["p:1"]) == {}
    cache.add_many({"p:1": {"like_count": 0}})  # the late reader's stale copy
    assert cache.get_many(["p:1"]) == {}
    cache.invalidate([])


def test_a_returned_value_is_a_copy(cache):
    cache.set_many({"k": {"list": [1]}})
    cache.get_many(["k"])["k"]["list"].append(2)
    assert cache.get_many(["k"]) == {"k": {"list": [1]}}


def test_memcached_that_is_down_reads_as_a_miss():
    dead = MemcachedCache(["127.0.0.1:1"])  # nothing listens there
    dead.set_many({"k": {"v": 1}})
    assert dead.get_many(["k"]) == {}
    dead.delete_many(["k"])
    with pytest.raises(CacheError):  # the writer must know: it hands the invalidation to a task
        dead.invalidate(["k"])


def test_redis_that_is_down_reads_as_a_miss():
    dead = RedisCache("redis://127.0.0.1:1/0")  # nothing listens there
    dead.set_many({"k": {"v": 1}})
    dead.add_many({"k": {"v": 1}})
    assert dead.get_many(["k"]) == {}
    dead.delete_many(["k"])
    with pytest.raises(CacheError):
        dead.invalidate(["k"])


def test_the_redis_cache_keeps_to_its_prefix(stack):
    RedisCache(stack["redis_url"], prefix="test-prefix:").set_many({"u:1": {"id": 1}})
    assert redis_lib.Redis.from_url(stack["redis_url"]).keys("*") == [b"test-prefix:u:1"]


# --- invalidation through the API --------------------------------------------


def _ready_photo(app, shutter, account) -> str:
    response = shutter.post("/v1/media/upload", account,
                            files={"photo": (io.BytesIO(images.jpeg(160, 120)), "p.jpg")})
    assert response.status_code == 202, response.json
    media_id = response.json["data"]["id"]
    services = app.extensions["shutter"]
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, int(media_id.split("_")[0]))
        assert pipeline.publish_photo(session, services.celery, int(media_id.split("_")[0]))
    return media_id


def test_a_like_shows_at_once_though_the_photo_was_cached(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    media_id = _ready_photo(app, shutter, alice)
    cache = app.extensions["shutter"].cache
    assert shutter.get(f"/v1/media/{media_id}", bob).json["data"]["likes"]["count"] == 0
    key = cached_photo_key(int(media_id.split("_")[0]))
    assert cache.get_many([key])[key]["like_count"] == 0  # the read cached the row
    assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert shutter.get(f"/v1/media/{media_id}", bob).json["data"]["likes"]["count"] == 1
    assert shutter.post(f"/v1/media/{media_id}/comments", bob, text="hi").status_code == 200
    assert shutter.get(f"/v1/media/{media_id}", alice).json["data"]["comments"]["count"] == 1
    assert shutter.delete(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert shutter.get(f"/v1/media/{media_id}", alice).json["data"]["likes"]["count"] == 0


def test_a_deleted_photo_is_gone_though_it_was_cached(app, shutter):
    alice = shutter.account("alice")
    media_id = _ready_photo(app, shutter, alice)
    assert shutter.get(f"/v1/media/{media_id}", alice).status_code == 200
    assert shutter.delete(f"/v1/media/{media_id}", alice).status_code == 200
    assert_error(shutter.get(f"/v1/media/{media_id}", alice), 404, "APINotFoundError")


def test_a_profile_edit_shows_at_once_though_the_user_was_cached(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    media_id = _ready_photo(app, shutter, alice)
    assert shutter.get(f"/v1/media/{media_id}", bob).json["data"]["user"]["full_name"] == ""
    cache = app.extensions["shutter"].cache
    assert cached_user_key(int(alice.id)) in cache.get_many([cached_user_key(int(alice.id))])
    assert shutter.post("/v1/users/self", alice, full_name="Alice Liddell").status_code == 200
    assert shutter.get(f"/v1/media/{media_id}", bob).json["data"]["user"]["full_name"] == "Alice Liddell"


def test_the_stack_uses_its_cache_backend(app, stack):
    cache = app.extensions["shutter"].cache
    expected = MemcachedCache if stack["name"] == "production" else RedisCache
    assert isinstance(cache, expected)
    cache.check()


def test_a_like_shows_at_once_through_another_process(make_app):
    """Two apps on the same settings are two gunicorn workers' worth of services:
    a like through one is exact, at once, in a read through the other (the
    embedded default's cache was per process, and stale there for 5 s)."""
    first, second = make_app(), make_app()
    through_first, through_second = Shutter(first.test_client()), Shutter(second.test_client())
    alice, bob = through_first.account("alice"), through_first.account("bob")
    media_id = _ready_photo(first, through_first, alice)
    for shutter in (through_first, through_second):  # both processes cache the photo
        assert shutter.get(f"/v1/media/{media_id}", bob).json["data"]["likes"]["count"] == 0
    assert through_first.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    media = through_second.get(f"/v1/media/{media_id}", bob).json["data"]
    assert (media["likes"]["count"], media["user_has_liked"]) == (1, True)
    assert through_first.delete(f"/v1/media/{media_id}/likes", bob).status_code == 200
    media = through_second.get(f"/v1/media/{media_id}", alice).json["data"]
    assert (media["likes"]["count"], media["user_has_liked"]) == (0, False)
