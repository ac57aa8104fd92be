"""Issue 16: a warm read touches no database.

Every read endpoint is read twice by the same viewer: the first (cold) read may
use SQL and rebuild what it needs; the second must answer the same body with
ZERO SQL statements, counted with SQLAlchemy's `before_cursor_execute` event
on every Engine of the process (the primary and any replica alike). Then a
change (a like, a comment, an unfollow) must show on the next read, and the
read after that must be warm again.

READS below is the one list of the endpoints, one per line: a read that is not
warm yet in this code carries `marks=NOT_WARM`; a branch that makes it warm
deletes that mark on its line. NOT_WARM expects only NotWarm, raised by the
SQL count: a wrong status, a wrong item count or a stale body fails for real.
"""
from __future__ import annotations

import contextlib
import io

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.engagement import popular
from app.media import pipeline
from tests.support import Shutter
from tests.test_feeds import JPEG, follow, services_of


class NotWarm(AssertionError):
    """A read that should have been warm ran SQL."""


NOT_WARM = pytest.mark.xfail(strict=True, raises=NotWarm, reason="not warm yet (issue 16)")

# (id, path, items in `data`: a count for a list, None for one object); {names} come from the world fixture.
READS = [
    pytest.param("feed", "/v1/users/self/feed", 5, id="feed"),
    pytest.param("users-self", "/v1/users/self", None, id="users-self"),
    pytest.param("user", "/v1/users/{friend}", None, id="user"),
    pytest.param("media", "/v1/media/{photo}", None, id="media"),
    pytest.param("shortcode", "/v1/media/shortcode/{code}", None, id="shortcode"),
    pytest.param("user-recent", "/v1/users/{friend}/media/recent", 2, id="user-recent"),
    pytest.param("private-recent", "/v1/users/{private}/media/recent", 2, id="private-recent"),
    pytest.param("tag-recent", "/v1/tags/warm/media/recent", 5, id="tag-recent"),
    pytest.param("location-recent", "/v1/locations/{location}/media/recent", 5, id="location-recent"),
    pytest.param("popular", "/v1/media/popular", 2, id="popular"),
    pytest.param("liked", "/v1/users/self/media/liked", 2, id="liked"),
    pytest.param("comments", "/v1/media/{photo}/comments", 2, id="comments"),
    pytest.param("likes", "/v1/media/{photo}/likes", 1, id="likes"),
    pytest.param("relationship", "/v1/users/{friend}/relationship", None, id="relationship"),
    pytest.param("followed-by", "/v1/users/{friend}/followed-by", 1, id="followed-by"),
    pytest.param("follows", "/v1/users/self/follows", 2, id="follows"),
    pytest.param("requested-by", "/v1/users/self/requested-by", 1, id="requested-by"),
    pytest.param("activity", "/v1/users/self/activity", 4, id="activity"),
]
_BY_ID = {param.values[0]: param for param in READS}


@contextlib.contextmanager
def counted_sql():
    """Every SQL statement any engine of this process runs meanwhile."""
    statements: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


@pytest.fixture
def world(shutter: Shutter):
    """The viewer (private) follows a public friend and a private account that approved
    them; the friend follows the viewer back, a stranger asks to. Two photos each of
    the friend and the private account, tagged #warm at one place; one of the viewer's
    own. The viewer liked two photos; comments and a like on the friend's first."""
    viewer = shutter.account("viewer", private=True)
    friend, private, stranger = (shutter.account(name, private=name == "private")
                                 for name in ("friend", "private", "stranger"))
    follow(shutter, viewer, friend)
    follow(shutter, viewer, private)
    assert shutter.relate(private, viewer, "approve").status_code == 200
    follow(shutter, friend, viewer)
    assert shutter.relate(viewer, friend, "approve").status_code == 200
    follow(shutter, stranger, viewer)  # pending: the viewer is private
    photos = {who.username: [upload_ready(shutter, who) for _ in range(2 if who is not viewer else 1)]
              for who in (friend, private, viewer)}
    first = photos["friend"][0]
    for photo in (first, photos["private"][0]):
        assert shutter.post(f"/v1/media/{photo}/likes", viewer).status_code == 200
    assert shutter.post(f"/v1/media/{first}/comments", friend, text="first #warm").status_code == 200
    assert shutter.post(f"/v1/media/{first}/comments", viewer, text="nice @friend").status_code == 200
    mine = photos["viewer"][0]
    assert shutter.post(f"/v1/media/{mine}/likes", friend).status_code == 200
    assert shutter.post(f"/v1/media/{mine}/comments", friend, text="yours").status_code == 200
    assert shutter.post(f"/v1/media/{photos['friend'][1]}/likes", stranger).status_code == 200
    services = services_of(shutter)
    with shutter.client.application.app_context(), services.db.session() as session:
        assert popular.compute(session, services.redis) == 2  # the friend's two (private accounts are not ranked)
    media = shutter.get(f"/v1/media/{first}", viewer).json["data"]
    names = {"friend": friend.id, "private": private.id, "photo": media["id"],
             "code": media["link"].rstrip("/").rsplit("/", 1)[1],
             "location": media["location"]["id"]}
    return viewer, friend, photos, names


def upload_ready(shutter: Shutter, account) -> int:
    """Uploaded through the API with a tag and a place, processed, published and fanned out."""
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(JPEG), "p.jpg")},
                            caption="a #warm day", lat="48.8584", lng="2.2945", location_name="Tour Eiffel")
    assert response.status_code == 202, response.json
    photo_id = int(response.json["data"]["id"].split("_")[0])
    services = services_of(shutter)
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id)
        assert pipeline.publish_photo(session, services.celery, photo_id, feeds=services.feeds)
    services.feeds.fan_out_all(photo_id)
    return photo_id


def read(shutter: Shutter, viewer, path: str, items: int | None = None) -> dict:
    response = shutter.get(path, viewer, count=50)
    assert response.status_code == 200, (path, response.get_data(as_text=True))
    body = response.json
    if items is not None:
        assert len(body["data"]) == items, (path, body["data"])
    else:
        assert isinstance(body["data"], dict) and body["data"], (path, body)
    return body


@pytest.mark.parametrize(("name", "path", "items"), READS)
def test_the_second_read_touches_no_database(shutter, world, name, path, items):
    viewer, _friend, _photos, names = world
    path = path.format(**names)
    cold = read(shutter, viewer, path, items)
    warm_read_answers(shutter, viewer, path, items, cold)


def warm_read_answers(shutter, viewer, path, items, before: dict) -> None:
    """The next read answers exactly `before` (checked first: a stale body fails for real),
    and runs no SQL (NotWarm names the statements if it did)."""
    with counted_sql() as statements:
        body = read(shutter, viewer, path, items)
    assert body == before, path
    if statements:
        raise NotWarm(f"{path}: {len(statements)} SQL statements on a warm read, first: {statements[0][:200]}")


# -- a change shows at once, and the read after it is warm again ----------------------------

def _liked_by_stranger(body):
    return body["data"]["likes"]["count"] == 2 and "stranger2" in [u["username"] for u in body["data"]["likes"]["data"]]


def _likers(body):
    return [u["username"] for u in body["data"]] == ["stranger2", "viewer"]


def _comment_shown(body):
    return body["data"][-1]["text"] == "a new comment" and len(body["data"]) == 3


def _media_comment_shown(body):
    return body["data"]["comments"]["count"] == 3 and body["data"]["comments"]["data"][-1]["text"] == "a new comment"


def _friend_gone_from_follows(body):
    return [u["username"] for u in body["data"]] == ["private"]


def _friend_gone_from_feed(body):
    return all(m["user"]["username"] != "friend" for m in body["data"]) and len(body["data"]) == 3


def _not_following(body):
    return body["data"]["outgoing_status"] == "none" and body["data"]["incoming_status"] == "followed_by"


def _viewer_gone_from_followers(body):
    return body["data"] == []


def _follows_count_down(body):
    return body["data"]["counts"]["follows"] == 1


# (the change, the read that must show it, its items after the change, what shows it)
CHANGES = [
    ("like", "media", None, _liked_by_stranger),
    ("like", "likes", 2, _likers),
    ("comment", "comments", 3, _comment_shown),
    ("comment", "media", None, _media_comment_shown),
    ("unfollow", "follows", 1, _friend_gone_from_follows),
    ("unfollow", "feed", 3, _friend_gone_from_feed),
    ("unfollow", "relationship", None, _not_following),
    ("unfollow", "followed-by", 0, _viewer_gone_from_followers),
    ("unfollow", "users-self", None, _follows_count_down),
]


def _change_params():
    for change, name, items_after, shows in CHANGES:
        param = _BY_ID[name]
        yield pytest.param(change, param.values[1], param.values[2], items_after, shows,
                           id=f"{change}-{name}", marks=param.marks)


def make_change(shutter: Shutter, viewer, friend, photos, change: str) -> None:
    first = photos["friend"][0]
    if change == "like":  # by someone else: the viewer's own like shows elsewhere too
        liker = shutter.account("stranger2")
        assert shutter.post(f"/v1/media/{first}/likes", liker).status_code == 200
    elif change == "comment":
        assert shutter.post(f"/v1/media/{first}/comments", friend, text="a new comment").status_code == 200
    elif change == "unfollow":
        assert shutter.relate(viewer, friend, "unfollow").status_code == 200
    else:
        raise AssertionError(change)


@pytest.mark.parametrize(("change", "path", "items", "items_after", "shows"), list(_change_params()))
def test_a_change_shows_on_the_next_read_and_the_one_after_is_warm(shutter, world, change, path, items,
                                                                   items_after, shows):
    viewer, friend, photos, names = world
    path = path.format(**names)
    cold = read(shutter, viewer, path, items)
    assert not shows(cold)
    read(shutter, viewer, path, items)  # warm now, where the code makes it warm
    make_change(shutter, viewer, friend, photos, change)
    fresh = read(shutter, viewer, path, items_after)
    assert shows(fresh), (change, path, fresh["data"])
    warm_read_answers(shutter, viewer, path, items_after, fresh)
