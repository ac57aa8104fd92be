"""GET /media/{id} warm (app/reads/warm.py): one Redis round trip and no SQL, the
same object as the long way, and never stale after a block, a privacy change or
a like. Which path answered is read off shutter_warm_reads_total."""
from __future__ import annotations

import contextlib

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from app.platform.keys import private_key, relations_key
from tests.support import Shutter, assert_error
from tests.test_feeds import follow, post_photo, services_of


def warm_reads(read: str = "media") -> float:
    return REGISTRY.get_sample_value("shutter_warm_reads_total", {"read": read, "path": "rendered"}) or 0.0


@contextlib.contextmanager
def statements(shutter):
    """The SQL statements run meanwhile, on every engine of the app."""
    seen: list[str] = []
    db = services_of(shutter).db
    engines = {id(e): e for e in [db.engine, *db.replicas]}.values()

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def get_media(shutter, account, photo_id, expect=200):
    """The media read's response, and whether the warm path answered it."""
    before = warm_reads()
    response = shutter.get(f"/v1/media/{photo_id}", account)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response, warm_reads() == before + 1


@pytest.fixture
def shutter(make_app):
    return Shutter(make_app().test_client())


def test_a_warm_media_read_runs_no_sql_and_equals_the_long_way(shutter):
    owner, viewer, liker = (shutter.account(n) for n in ("owner", "viewer", "liker"))
    photo = post_photo(shutter, owner)
    assert shutter.post(f"/v1/media/{photo}/likes", liker).status_code == 200
    assert shutter.post(f"/v1/media/{photo}/comments", liker, text="nice").status_code == 200
    cold, warm_path = get_media(shutter, viewer, photo)
    assert not warm_path
    with statements(shutter) as sql:
        warm, warm_path = get_media(shutter, viewer, photo)
    assert warm_path and sql == []
    assert warm.json == cold.json
    # The shortcode reads the same object, warm too.
    code = cold.json["data"]["link"].rstrip("/").rsplit("/", 1)[1]
    with statements(shutter) as sql:
        by_code = shutter.get(f"/v1/media/shortcode/{code}", viewer)
    assert by_code.json == cold.json and sql == []


def test_a_like_shows_in_the_next_read_and_it_is_warm_again(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    get_media(shutter, viewer, photo)
    assert shutter.post(f"/v1/media/{photo}/likes", viewer).status_code == 200
    after, _ = get_media(shutter, viewer, photo)
    assert after.json["data"]["user_has_liked"] is True and after.json["data"]["likes"]["count"] == 1
    again, warm_path = get_media(shutter, viewer, photo)
    assert warm_path and again.json == after.json


@pytest.mark.parametrize("blocker", ["owner", "viewer"])
def test_a_block_either_way_hides_a_warm_photo_at_once(shutter, blocker):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    get_media(shutter, viewer, photo)
    assert get_media(shutter, viewer, photo)[1]  # warm
    who, whom = (owner, viewer) if blocker == "owner" else (viewer, owner)
    assert shutter.relate(who, whom, "block").status_code == 200
    response = shutter.get(f"/v1/media/{photo}", viewer)
    assert response.status_code in (400, 404)
    assert response.status_code == shutter.get(f"/v1/media/{photo}", viewer).status_code  # twice: still refused
    assert shutter.relate(who, whom, "unblock").status_code == 200
    get_media(shutter, viewer, photo)
    assert get_media(shutter, viewer, photo)[1]  # warm again


def test_an_account_made_private_hides_its_warm_photos_from_strangers(shutter):
    owner, stranger, follower = (shutter.account(n) for n in ("owner", "stranger", "follower"))
    follow(shutter, follower, owner)
    photo = post_photo(shutter, owner)
    for who in (stranger, follower):
        get_media(shutter, who, photo)
        assert get_media(shutter, who, photo)[1]
    assert shutter.post("/v1/users/self", owner, is_private="true").status_code == 200
    assert_error(shutter.get(f"/v1/media/{photo}", stranger), 400, "APINotAllowedError")
    assert_error(shutter.get(f"/v1/media/{photo}", stranger), 400, "APINotAllowedError")
    get_media(shutter, follower, photo)  # an approved follower still sees it, warm again
    assert get_media(shutter, follower, photo)[1]


def test_a_pending_request_does_not_open_a_private_account(shutter):
    owner = shutter.account("owner", private=True)
    asker = shutter.account("asker")
    photo = post_photo(shutter, owner)
    assert shutter.relate(asker, owner, "follow").status_code == 200  # pending
    for _ in range(2):
        assert_error(shutter.get(f"/v1/media/{photo}", asker), 400, "APINotAllowedError")
    assert shutter.relate(owner, asker, "approve").status_code == 200
    get_media(shutter, asker, photo)
    assert get_media(shutter, asker, photo)[1]


def test_what_the_graph_holds(shutter):
    private, public, viewer = (shutter.account("private", private=True), shutter.account("public"),
                               shutter.account("viewer"))
    photo = post_photo(shutter, public)
    assert shutter.relate(viewer, private, "follow").status_code == 200  # a request
    assert shutter.relate(public, viewer, "block").status_code == 200
    assert shutter.relate(public, viewer, "unblock").status_code == 200
    assert shutter.relate(viewer, public, "block").status_code == 200
    assert shutter.relate(viewer, public, "unblock").status_code == 200
    get_media(shutter, viewer, photo)
    redis = services_of(shutter).redis
    assert redis.hgetall(relations_key(int(viewer.id))) == {"0": "1", private.id: "p"}
    assert redis.get(private_key(int(public.id))) == "0"
    assert shutter.relate(private, viewer, "block").status_code == 200
    assert not redis.exists(relations_key(int(viewer.id)))  # dropped after the commit
    get_media(shutter, viewer, photo)
    assert redis.hgetall(relations_key(int(viewer.id))) == {"0": "1", private.id: "B"}
