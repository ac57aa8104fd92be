"""The home feed: fan-out on write, celebrities merged on read, cold rebuilds.

Photos are made ready without a worker, by calling the pipeline's service
functions with the app's own services, and fan-out runs in-process through
the same FeedManager code the feed tasks call.
"""
from __future__ import annotations

import dataclasses
import io
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
from PIL import Image
from sqlalchemy import event

from app.feeds.manager import BUILT, FeedManager
from app.media import pipeline
from app.platform.keys import celebrities_key, feed_key, following_key, posts_key
from tests.support import Shutter, assert_error


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 60, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


def services_of(shutter: Shutter):
    return shutter.client.application.extensions["shutter"]


def post_photo(shutter: Shutter, account, *, fan_out: bool = True, **fields) -> int:
    """Upload through the API (with `fields`: caption…), then process and publish
    as the media worker would."""
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(JPEG), "p.jpg")}, **fields)
    assert response.status_code == 202, response.json
    photo_id = int(response.json["data"]["id"].split("_")[0])
    services = services_of(shutter)
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id)
        assert pipeline.publish_photo(session, services.celery, photo_id, feeds=services.feeds)
    if fan_out:
        services.feeds.fan_out_all(photo_id)
    return photo_id


def feed(shutter: Shutter, account, **params):
    response = shutter.get("/v1/users/self/feed", account, **params)
    assert response.status_code == 200, response.json
    return [int(m["id"].split("_")[0]) for m in response.json["data"]], response.json["pagination"]


def walk(shutter: Shutter, account, **params) -> list[list[int]]:
    """Every page, following next_url as a client would."""
    pages = []
    while True:
        ids, pagination = feed(shutter, account, **params)
        pages.append(ids)
        if not pagination:
            return pages
        assert pagination["next_max_id"] == str(ids[-1]) if ids else True
        params = dict(parse_qsl(urlsplit(pagination["next_url"]).query))
        assert len(pages) < 50


def follow(shutter, who, target):
    assert shutter.relate(who, target, "follow").status_code == 200


def members(shutter, user) -> set[str]:
    return set(services_of(shutter).redis.zrange(feed_key(int(user.id)), 0, -1))


@pytest.fixture
def trio(shutter):
    """alice follows bob and carol; everyone has posted, interleaved."""
    alice, bob, carol = (shutter.account(name) for name in ("alice", "bob", "carol"))
    follow(shutter, alice, bob)
    follow(shutter, alice, carol)
    posted = [post_photo(shutter, who) for who in (bob, carol, alice, bob, bob, carol, alice, bob, carol)]
    return alice, bob, carol, sorted(posted, reverse=True)


def test_feed_is_newest_first_and_pages_without_gaps_or_duplicates(shutter, trio):
    alice, bob, carol, posted = trio
    pages = walk(shutter, alice, count=3)
    assert [len(page) for page in pages] == [3, 3, 3]
    assert [i for page in pages for i in page] == posted
    pages = walk(shutter, alice, count=4)
    assert [len(page) for page in pages] == [4, 4, 1]
    assert [i for page in pages for i in page] == posted
    response = shutter.get("/v1/users/self/feed", alice, count=2)
    first = response.json["data"][0]
    assert first["id"] == f"{posted[0]}_{first['user']['id']}" and first["status"] == "ready"
    assert response.json["pagination"]["next_max_id"] == str(posted[1])
    assert "max_id=" in response.json["pagination"]["next_url"]
    # v1's next_url is fetched as it is (the official client adds no token): it carries the
    # query's access_token (README, Departures; it was left out before issue 13)
    assert f"access_token={alice.token}" in response.json["pagination"]["next_url"]
    # bob follows nobody: his own photos only.
    assert feed(shutter, bob)[0] == [i for i in posted if i in set(feed(shutter, bob)[0])]
    assert len(feed(shutter, bob)[0]) == 4


def test_default_count_and_max_id_bounds(shutter, trio):
    alice, _, _, posted = trio
    assert feed(shutter, alice)[0] == posted  # count defaults to 20
    assert feed(shutter, alice, max_id=str(posted[4]))[0] == posted[5:]
    assert feed(shutter, alice, max_id=f"{posted[4]}_123")[0] == posted[5:]  # a v1 media id works too
    assert feed(shutter, alice, max_id=str(posted[-1])) == ([], {})


def test_min_id_returns_the_newer_photos_and_pages_down_to_it(shutter, trio):
    alice, _, _, posted = trio
    assert feed(shutter, alice, min_id=str(posted[5]))[0] == posted[:5]
    pages = walk(shutter, alice, count=2, min_id=str(posted[5]))
    assert pages == [posted[0:2], posted[2:4], posted[4:5]]
    assert feed(shutter, alice, min_id=str(posted[0])) == ([], {})
    assert feed(shutter, alice, min_id=str(posted[6]), max_id=str(posted[2]))[0] == posted[3:6]


def test_author_sees_their_own_photo_at_once(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, bob, alice)
    assert feed(shutter, alice)[0] == [] and feed(shutter, bob)[0] == []  # both feeds built, empty
    photo = post_photo(shutter, alice, fan_out=False)  # publish only: no fan-out yet
    assert feed(shutter, alice)[0] == [photo]
    assert feed(shutter, bob)[0] == []
    services_of(shutter).feeds.fan_out_all(photo)
    assert feed(shutter, bob)[0] == [photo]


def test_cold_feed_is_rebuilt_from_the_database(shutter, trio):
    alice, bob, _, posted = trio
    assert feed(shutter, alice)[0] == posted
    redis = services_of(shutter).redis
    redis.flushdb()
    assert feed(shutter, alice)[0] == posted
    assert redis.zscore(feed_key(int(alice.id)), BUILT) == 0
    # A fan-out into a flushed feed creates a partial key: still rebuilt in full.
    redis.flushdb()
    newest = post_photo(shutter, bob)
    assert redis.zcard(feed_key(int(alice.id))) == 1
    assert walk(shutter, alice, count=4) == [[newest, *posted[:3]], posted[3:7], posted[7:]]


def test_empty_feed_is_built_once(shutter):
    """An empty feed keeps its sentinel: later reads do not rebuild it. Seen
    through a photo only the database knows (published without touching any
    feed): a rebuild would bring it in."""
    alice = shutter.account("alice")
    assert feed(shutter, alice) == ([], {})
    assert members(shutter, alice) == {BUILT}
    response = shutter.post("/v1/media/upload", alice, files={"photo": (io.BytesIO(JPEG), "p.jpg")})
    photo_id = int(response.json["data"]["id"].split("_")[0])
    services = services_of(shutter)
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id)
        assert pipeline.publish_photo(session, services.celery, photo_id)  # no feeds: not in alice's
    for _ in range(2):
        assert feed(shutter, alice) == ([], {})
    services.redis.delete(feed_key(int(alice.id)))  # a missing feed is rebuilt: the photo was really there
    assert feed(shutter, alice) == ([photo_id], {})


def test_concurrent_rebuilds_agree(shutter, app):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, alice, bob)
    posted = sorted((post_photo(shutter, who) for who in [bob] * 6 + [alice] * 2), reverse=True)
    services_of(shutter).redis.flushdb()
    results, errors = [], []
    start = threading.Barrier(8)

    def read():
        try:
            client = Shutter(app.test_client())
            start.wait()
            results.append(feed(client, alice, count=5))
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(r == (posted[:5], results[0][1]) for r in results) and len(results) == 8
    assert members(shutter, alice) == {BUILT, *map(str, posted)}
    assert [i for page in walk(shutter, alice, count=5) for i in page] == posted


def test_unfollow_takes_the_photos_out(shutter, trio):
    alice, bob, carol, posted = trio
    bobs = set(feed(shutter, bob)[0])
    shutter.relate(alice, bob, "unfollow")
    assert feed(shutter, alice)[0] == [i for i in posted if i not in bobs]
    assert not members(shutter, alice) & set(map(str, bobs))
    follow(shutter, alice, bob)  # following again merges them back
    assert feed(shutter, alice)[0] == posted
    assert set(map(str, bobs)) <= members(shutter, alice)


def test_a_followees_rebuild_that_raced_a_block_is_not_stored(shutter, trio):
    """following:{u} and celebs:{u} are rebuilt from the database on a miss; a
    rebuild whose query may predate a committed follow change must not store
    what it read (a blocked account would stay 'followed' for FOLLOWING_TTL)."""
    alice, bob, carol, posted = trio
    services = services_of(shutter)
    feeds, redis = services.feeds, services.redis
    before = feeds.clocks.now()  # a rebuild starts: its clock reading precedes its query ...
    assert shutter.relate(bob, alice, "block").status_code == 200  # ... a block is committed ...
    with services.db.session() as session:  # ... and the rebuild stores what it read: refused
        feeds.build_following(session, int(alice.id), since=before)
    assert not redis.exists(following_key(int(alice.id)))
    with services.db.session() as session:  # a rebuild that started after the change is stored
        assert feeds.build_following(session, int(alice.id)) == [int(carol.id)]
        assert feeds.followed_celebrities(session, int(alice.id)) == []
    assert redis.smembers(following_key(int(alice.id))) == {BUILT, carol.id}
    assert redis.get(celebrities_key(int(alice.id))) == ""
    assert [i for page in walk(shutter, alice) for i in page] == feed(shutter, alice)[0]


def test_block_takes_the_photos_out_both_ways(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, alice, bob)
    follow(shutter, bob, alice)
    a, b = post_photo(shutter, alice), post_photo(shutter, bob)
    assert feed(shutter, alice)[0] == [b, a] and feed(shutter, bob)[0] == [b, a]
    assert shutter.relate(alice, bob, "block").status_code == 200
    assert feed(shutter, alice)[0] == [a] and feed(shutter, bob)[0] == [b]
    assert str(b) not in members(shutter, alice) and str(a) not in members(shutter, bob)
    services_of(shutter).redis.flushdb()  # and a rebuild agrees
    assert feed(shutter, alice)[0] == [a] and feed(shutter, bob)[0] == [b]


def test_deleted_photo_leaves_the_feeds(shutter, trio):
    alice, bob, _, posted = trio
    victim = feed(shutter, bob)[0][0]
    response = shutter.delete(f"/v1/media/{victim}", bob)
    assert response.status_code == 200, response.json
    remaining = [i for i in posted if i != victim]
    assert feed(shutter, alice)[0] == remaining  # hidden at once by hydration
    services_of(shutter).feeds.remove_photo_all(victim, int(bob.id))  # the task the delete enqueued
    assert str(victim) not in members(shutter, alice) | members(shutter, bob)
    assert feed(shutter, alice)[0] == remaining


def test_private_photos_reach_approved_followers_only(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob", private=True)
    follow(shutter, alice, bob)  # a request, pending
    assert feed(shutter, alice)[0] == []
    first = post_photo(shutter, bob)
    assert feed(shutter, alice)[0] == [] and str(first) not in members(shutter, alice)
    services_of(shutter).redis.flushdb()
    assert feed(shutter, alice)[0] == []  # nor through a rebuild
    assert shutter.relate(bob, alice, "approve").status_code == 200
    assert feed(shutter, alice)[0] == [first]
    second = post_photo(shutter, bob)
    assert feed(shutter, alice)[0] == [second, first]


def test_going_public_merges_the_approved_requests(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob", private=True)
    follow(shutter, alice, bob)
    photo = post_photo(shutter, bob)
    assert feed(shutter, alice)[0] == []
    assert shutter.post("/v1/users/self", bob, is_private="false").status_code == 200
    assert feed(shutter, alice)[0] == [photo]


@pytest.fixture
def celebrity_shutter(make_app):
    return Shutter(make_app(celebrity_threshold=2).test_client())


def test_celebrities_are_merged_at_read_time_not_fanned_out(celebrity_shutter):
    shutter = celebrity_shutter
    star, fan, other, third = (shutter.account(n) for n in ("star", "fan", "other", "third"))
    for who in (fan, other, third):
        follow(shutter, who, star)  # 3 followers > threshold 2
    follow(shutter, fan, other)
    for who in (fan, other):
        assert feed(shutter, who)[0] == []  # built
    posted = sorted((post_photo(shutter, who) for who in (star, other, star, star, other, star)), reverse=True)
    stars = set(feed(shutter, star)[0])
    assert len(stars) == 4
    # Not fanned out: no follower's feed holds a star photo ...
    assert not members(shutter, fan) & set(map(str, stars))
    assert set(services_of(shutter).redis.zrange(posts_key(int(star.id)), 0, -1)) - {BUILT} == set(map(str, stars))
    # ... but every follower's feed shows them, in order, across pages.
    assert [i for page in walk(shutter, fan, count=4) for i in page] == posted
    assert [i for page in walk(shutter, third, count=3) for i in page] == [i for i in posted if i in stars]
    assert feed(shutter, fan, min_id=str(posted[3]))[0] == posted[:3]
    services_of(shutter).redis.flushdb()  # the posts set is rebuilt on read as well
    assert [i for page in walk(shutter, fan, count=4) for i in page] == posted
    shutter.relate(fan, star, "unfollow")
    assert feed(shutter, fan)[0] == [i for i in posted if i not in stars]


def test_fan_out_runs_in_chunks_and_skips_what_is_not_ready(shutter):
    author = shutter.account("author")
    followers = [shutter.account(f"f{i}") for i in range(5)]
    for who in followers:
        follow(shutter, who, author)
    feeds = services_of(shutter).feeds
    photo = post_photo(shutter, author, fan_out=False)
    cursor, chunks = 0, 0
    while cursor is not None:
        cursor = feeds.fan_out(photo, cursor, chunk=2)
        chunks += 1
    assert chunks == 3
    assert all(str(photo) in members(shutter, who) for who in followers)
    feeds.fan_out_all(photo, chunk=2)  # twice: harmless
    assert services_of(shutter).redis.zcard(feed_key(int(followers[0].id))) == 1
    assert feeds.fan_out(123456789, 0) is None  # no such photo
    response = shutter.post("/v1/media/upload", author, files={"photo": (io.BytesIO(JPEG), "p.jpg")})
    processing = int(response.json["data"]["id"].split("_")[0])
    assert feeds.fan_out(processing, 0) is None
    assert str(processing) not in members(shutter, followers[0])


def test_feeds_are_capped(shutter):
    services = services_of(shutter)
    feeds = FeedManager(services.redis, services.db, dataclasses.replace(services.settings, feed_size=3), services.media)
    base = 1_800_000_000_000_000_000
    feeds._store_built(feed_key(7), [base + 1, base + 2])
    for k in range(3, 7):
        feeds.deliver(base + k, [7, 8])
    assert services.redis.zrange(feed_key(7), 0, -1) == [BUILT, *(str(base + k) for k in (4, 5, 6))]
    # A feed fan-out made from nothing (no sentinel) keeps its oldest entry and the newest 3.
    assert services.redis.zrange(feed_key(8), 0, -1) == [str(base + k) for k in (3, 4, 5, 6)]


def test_publish_enqueues_the_fan_out():
    assert "tasks.feeds.fan_out" in pipeline.downstream_task_names()


def test_ids_sharing_a_score_page_exactly(shutter):
    """Ids 1 apart round to the same double: cursors must still be exact."""
    feeds = services_of(shutter).feeds
    base = 1_700_000_000_000_000_000
    ids = [base + k for k in range(60)]
    assert len({float(i) for i in ids}) < 5  # they do share scores
    key = feed_key(1)
    feeds._store_built(key, ids)
    newest_first = sorted(ids, reverse=True)
    (got,), _, _ = feeds._range([key], 5, base + 30, None)
    assert got == [base + 29, base + 28, base + 27, base + 26, base + 25]
    cursor, seen = None, []
    while True:
        (got,), (more,), _ = feeds._range([key], 7, cursor, base + 3)
        seen += got
        if not more:
            break
        cursor = got[-1]
    assert seen == newest_first[: len(ids) - 4]


def test_a_page_costs_the_same_queries_whatever_its_size(shutter, app):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, alice, bob)
    for _ in range(6):
        post_photo(shutter, bob)
    feed(shutter, alice)  # warm: the feed is built, the token cached
    statements = []
    engine = services_of(shutter).db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    redis = services_of(shutter).redis
    event.listen(engine, "before_cursor_execute", listener)
    try:
        # The assembled path each time (app/feeds/rendered.py would answer without a query).
        redis.delete(*redis.keys("mi:*"), *redis.keys("ui:*"))
        feed(shutter, alice, count=1)
        small = len(statements)
        statements.clear()
        redis.delete(*redis.keys("mi:*"), *redis.keys("ui:*"))
        feed(shutter, alice, count=6)
        assert len(statements) == small, statements
    finally:
        event.remove(engine, "before_cursor_execute", listener)


@pytest.mark.parametrize("params, field", [
    ({"count": "0"}, "count"), ({"count": "101"}, "count"), ({"count": "many"}, "count"),
    ({"max_id": "abc"}, "max_id"), ({"min_id": "-5"}, "min_id"),
])
def test_bad_parameters_are_400(shutter, params, field):
    alice = shutter.account("alice")
    meta = assert_error(shutter.get("/v1/users/self/feed", alice, **params), 400, "APIInvalidParametersError")
    assert field in meta["error_message"]


def test_a_token_is_required(shutter):
    assert_error(shutter.get("/v1/users/self/feed"), 400, "OAuthParameterException")
    assert_error(shutter.get("/v1/users/self/feed", access_token="nope"), 400, "OAuthAccessTokenException")
