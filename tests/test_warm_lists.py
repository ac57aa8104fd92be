"""The media lists warm (app/reads/lists.py): a user's recent media, a tag's, a
location's, the viewer's likes and the popular ones, each one Redis round trip
with no SQL, equal to the long way page by page (cursors and next_url included),
and never stale after an upload, a delete, a like, a block or a privacy change.
Which path answered is read off shutter_warm_reads_total."""
from __future__ import annotations

import io

import pytest
from prometheus_client import REGISTRY

from app.engagement import popular
from app.platform.keys import tag_media_key, user_media_key
from tests.support import Shutter, assert_error
from tests.test_feeds import JPEG, follow, post_photo, services_of
from tests.test_warm_media import statements


def warm_reads(read: str) -> float:
    return REGISTRY.get_sample_value("shutter_warm_reads_total", {"read": read, "path": "rendered"}) or 0.0


def read_list(shutter, account, path, read, expect=200, **params):
    """The list's response, and whether the warm path answered it."""
    before = warm_reads(read)
    response = shutter.get(path, account, **params)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response, warm_reads(read) == before + 1


def pages(shutter, account, path, read, cursor, drop=None, **params):
    """Every page of the list, each read twice: the first (cold or warm; the long way
    when `drop`, the list's key, is dropped before it) must equal the second, which
    must be warm with no SQL. The pages' ids, newest first."""
    ids = []
    while True:
        if drop:
            services_of(shutter).redis.delete(drop)
        first, warm = read_list(shutter, account, path, read, **params)
        assert not (drop and warm)
        with statements(shutter) as sql:
            second, warm = read_list(shutter, account, path, read, **params)
        assert warm and sql == [], (path, params)
        assert second.json == first.json
        ids += [m["id"].split("_")[0] for m in first.json["data"]]
        pagination = first.json["pagination"]
        if cursor not in pagination:
            return ids
        params = {**params, **{cursor.replace("next_", ""): pagination[cursor]}}


def ids_of(response) -> list[str]:
    return [m["id"].split("_")[0] for m in response.json["data"]]


@pytest.fixture
def shutter(make_app):
    return Shutter(make_app().test_client())


# -- GET /users/{id}/media/recent ---------------------------------------------------

def test_a_users_recent_media_warm_equals_the_long_way_page_by_page(shutter):
    owner, viewer, liker = (shutter.account(n) for n in ("owner", "viewer", "liker"))
    photos = [str(post_photo(shutter, owner, caption=f"#sun {i}")) for i in range(5)]
    assert shutter.post(f"/v1/media/{photos[1]}/likes", viewer).status_code == 200
    assert shutter.post(f"/v1/media/{photos[2]}/comments", liker, text="nice").status_code == 200
    path = f"/v1/users/{owner.id}/media/recent"
    assert pages(shutter, viewer, path, "user_media", "next_max_id", count=2) == photos[::-1]
    # The long way's pages, for the same cursors (the lists dropped: every read is cold).
    redis = services_of(shutter).redis
    long_way = []
    params = {"count": 2}
    while True:
        redis.delete(user_media_key(int(owner.id)))
        cold, warm = read_list(shutter, viewer, path, "user_media", **params)
        assert not warm
        again, warm = read_list(shutter, viewer, path, "user_media", **params)
        assert warm and again.json == cold.json
        long_way += ids_of(cold)
        if "next_max_id" not in cold.json["pagination"]:
            break
        assert f"max_id={cold.json['pagination']['next_max_id']}" in cold.json["pagination"]["next_url"]
        params["max_id"] = cold.json["pagination"]["next_max_id"]
    assert long_way == photos[::-1]
    # self, min_id and the timestamps page alike.
    assert pages(shutter, owner, "/v1/users/self/media/recent", "user_media", "next_max_id", count=3) == photos[::-1]
    assert pages(shutter, viewer, path, "user_media", "next_max_id", min_id=photos[1]) == photos[:1:-1]
    newest = shutter.get(f"/v1/media/{photos[-1]}", viewer).json["data"]["created_time"]
    assert pages(shutter, viewer, path, "user_media", "next_max_id", max_timestamp=int(newest) - 3600) == []
    assert pages(shutter, viewer, path, "user_media", "next_max_id", min_timestamp=int(newest) + 3600) == []
    assert pages(shutter, viewer, path, "user_media", "next_max_id", min_timestamp=int(newest) - 3600,
                 max_timestamp=int(newest) + 3600, count=4) == photos[::-1]


def test_a_users_recent_media_follows_uploads_deletes_and_likes_at_once(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    first = str(post_photo(shutter, owner))
    path = f"/v1/users/{owner.id}/media/recent"
    read_list(shutter, viewer, path, "user_media")
    assert ids_of(read_list(shutter, viewer, path, "user_media")[0]) == [first]
    second = str(post_photo(shutter, owner))
    response, _ = read_list(shutter, viewer, path, "user_media")
    assert ids_of(response) == [second, first]
    assert read_list(shutter, viewer, path, "user_media")[1]  # warm again
    assert shutter.post(f"/v1/media/{first}/likes", viewer).status_code == 200
    response, _ = read_list(shutter, viewer, path, "user_media")
    assert response.json["data"][1]["user_has_liked"] is True and response.json["data"][1]["likes"]["count"] == 1
    assert shutter.delete(f"/v1/media/{second}", owner).status_code == 200
    response, _ = read_list(shutter, viewer, path, "user_media")
    assert ids_of(response) == [first]
    again, warm = read_list(shutter, viewer, path, "user_media")
    assert warm and again.json == response.json
    # A photo still processing is not listed, warm or not.
    upload = shutter.post("/v1/media/upload", owner, files={"photo": (io.BytesIO(JPEG), "p.jpg")})
    assert upload.status_code == 202
    assert ids_of(read_list(shutter, viewer, path, "user_media")[0]) == [first]


@pytest.mark.parametrize("blocker", ["owner", "viewer"])
def test_a_block_either_way_closes_a_warm_users_list(shutter, blocker):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    post_photo(shutter, owner)
    path = f"/v1/users/{owner.id}/media/recent"
    read_list(shutter, viewer, path, "user_media")
    assert read_list(shutter, viewer, path, "user_media")[1]
    who, whom = (owner, viewer) if blocker == "owner" else (viewer, owner)
    assert shutter.relate(who, whom, "block").status_code == 200
    for _ in range(2):
        response = shutter.get(path, viewer)
        assert response.status_code in (400, 404) and "data" not in response.json
    assert shutter.relate(who, whom, "unblock").status_code == 200
    read_list(shutter, viewer, path, "user_media")
    assert read_list(shutter, viewer, path, "user_media")[1]


def test_an_account_made_private_closes_its_warm_list_to_strangers(shutter):
    owner, stranger, follower = (shutter.account(n) for n in ("owner", "stranger", "follower"))
    follow(shutter, follower, owner)
    photo = str(post_photo(shutter, owner))
    path = f"/v1/users/{owner.id}/media/recent"
    for who in (stranger, follower):
        read_list(shutter, who, path, "user_media")
        assert read_list(shutter, who, path, "user_media")[1]
    assert shutter.post("/v1/users/self", owner, is_private="true").status_code == 200
    for _ in range(2):
        assert_error(shutter.get(path, stranger), 400, "APINotAllowedError")
    read_list(shutter, follower, path, "user_media")
    response, warm = read_list(shutter, follower, path, "user_media")
    assert warm and ids_of(response) == [photo]


def test_bad_input_still_answers_the_long_ways_errors(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    post_photo(shutter, owner)
    path = f"/v1/users/{owner.id}/media/recent"
    read_list(shutter, viewer, path, "user_media")
    assert_error(shutter.get(path, viewer, max_id="abc"), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/12x/media/recent", viewer), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/1234567890123456789/media/recent", viewer), 404, "APINotFoundError")
    assert_error(shutter.get(path, None), 400, "OAuthParameterException")
    assert_error(shutter.get(path, None, access_token="nope"), 400, "OAuthAccessTokenException")


# -- GET /tags/{name}/media/recent ---------------------------------------------------

def test_a_tags_media_warm_equals_the_long_way_and_shows_only_what_the_viewer_may_see(shutter):
    public, private, blocker, viewer = (shutter.account("public"), shutter.account("private", private=True),
                                        shutter.account("blocker"), shutter.account("viewer"))
    friend = shutter.account("friend", private=True)
    follow(shutter, viewer, friend)
    assert shutter.relate(friend, viewer, "approve").status_code == 200
    shown = []
    for i in range(3):
        shown.append(str(post_photo(shutter, public, caption=f"#Sun day {i}")))
        post_photo(shutter, private, caption="#sun hidden")
        post_photo(shutter, blocker, caption="#sun blocked")
        shown.append(str(post_photo(shutter, friend, caption="a #sun for friends")))
    post_photo(shutter, public, caption="#moon")
    assert shutter.relate(blocker, viewer, "block").status_code == 200
    path = "/v1/tags/SUN/media/recent"
    key = tag_media_key("sun")
    assert pages(shutter, viewer, path, "tag_media", "next_max_tag_id", drop=key, count=2) == shown[::-1]
    assert pages(shutter, viewer, path, "tag_media", "next_max_tag_id", count=4) == shown[::-1]
    assert pages(shutter, viewer, path, "tag_media", "next_max_tag_id", min_tag_id=shown[1]) == shown[:1:-1]
    # A tag nobody used is an empty list, warm too; a bad name is the long way's 400.
    assert pages(shutter, viewer, "/v1/tags/nothing/media/recent", "tag_media", "next_max_tag_id") == []
    assert_error(shutter.get("/v1/tags/no-such!/media/recent", viewer), 400, "APIInvalidParametersError")
    assert_error(shutter.get(path, viewer, max_tag_id="x"), 400, "APIInvalidParametersError")


def test_a_tags_warm_list_follows_uploads_deletes_blocks_and_privacy(shutter):
    owner, other, viewer = shutter.account("owner"), shutter.account("other"), shutter.account("viewer")
    first = str(post_photo(shutter, owner, caption="#sun"))
    path = "/v1/tags/sun/media/recent"
    read_list(shutter, viewer, path, "tag_media")
    assert read_list(shutter, viewer, path, "tag_media")[1]
    second = str(post_photo(shutter, other, caption="#sun too"))
    assert ids_of(read_list(shutter, viewer, path, "tag_media")[0]) == [second, first]
    assert read_list(shutter, viewer, path, "tag_media")[1]
    assert shutter.delete(f"/v1/media/{second}", other).status_code == 200
    assert ids_of(read_list(shutter, viewer, path, "tag_media")[0]) == [first]
    assert shutter.relate(owner, viewer, "block").status_code == 200
    assert ids_of(read_list(shutter, viewer, path, "tag_media")[0]) == []
    assert shutter.relate(owner, viewer, "unblock").status_code == 200
    assert ids_of(read_list(shutter, viewer, path, "tag_media")[0]) == [first]
    assert read_list(shutter, viewer, path, "tag_media")[1]
    assert shutter.post("/v1/users/self", owner, is_private="true").status_code == 200
    assert ids_of(read_list(shutter, viewer, path, "tag_media")[0]) == []
    response, warm = read_list(shutter, viewer, path, "tag_media")
    assert warm and ids_of(response) == []
    assert ids_of(read_list(shutter, owner, path, "tag_media")[0]) == [first]  # the owner still sees it


# -- GET /users/self/media/liked -----------------------------------------------------

def test_the_liked_list_warm_equals_the_long_way_and_follows_likes_unlikes_and_deletes(shutter):
    owner, private, viewer = shutter.account("owner"), shutter.account("private", private=True), shutter.account("v")
    photos = [str(post_photo(shutter, owner)) for _ in range(4)]
    follow(shutter, viewer, private)
    assert shutter.relate(private, viewer, "approve").status_code == 200
    hidden = str(post_photo(shutter, private))
    for photo in (photos[2], hidden, photos[0], photos[3], photos[1]):  # liked in this order
        assert shutter.post(f"/v1/media/{photo}/likes", viewer).status_code == 200
    path = "/v1/users/self/media/liked"
    newest_first = [photos[1], photos[3], photos[0], hidden, photos[2]]
    assert pages(shutter, viewer, path, "liked_media", "next_max_like_id", drop=f"lkm:{viewer.id}",
                 count=2) == newest_first
    assert pages(shutter, viewer, path, "liked_media", "next_max_like_id", count=3) == newest_first
    # An unfollow hides the private account's photo; an unlike and a delete take theirs out.
    assert shutter.relate(viewer, private, "unfollow").status_code == 200
    assert shutter.delete(f"/v1/media/{photos[1]}/likes", viewer).status_code == 200
    assert shutter.delete(f"/v1/media/{photos[0]}", owner).status_code == 200
    assert pages(shutter, viewer, path, "liked_media", "next_max_like_id", count=2) == [photos[3], photos[2]]
    assert shutter.post(f"/v1/media/{photos[1]}/likes", viewer).status_code == 200  # liked again: the newest
    assert pages(shutter, viewer, path, "liked_media", "next_max_like_id") == [photos[1], photos[3], photos[2]]


def test_a_liked_photo_deleted_long_ago_leaves_the_list(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    kept, gone = str(post_photo(shutter, owner)), str(post_photo(shutter, owner))
    for photo in (kept, gone):
        assert shutter.post(f"/v1/media/{photo}/likes", viewer).status_code == 200
    path = "/v1/users/self/media/liked"
    assert pages(shutter, viewer, path, "liked_media", "next_max_like_id") == [gone, kept]
    assert shutter.delete(f"/v1/media/{gone}", owner).status_code == 200
    services_of(shutter).redis.delete(f"mi:{gone}")  # its "gone" entry expired
    assert pages(shutter, viewer, path, "liked_media", "next_max_like_id") == [kept]
    assert len(services_of(shutter).redis.zrange(f"lkm:{viewer.id}", 0, -1)) == 2  # the sentinel and `kept`


# -- GET /locations/{id}/media/recent ------------------------------------------------

def test_a_locations_media_warm_equals_the_long_way_and_follows_uploads_and_deletes(shutter):
    owner, private, viewer = shutter.account("owner"), shutter.account("private", private=True), shutter.account("v")
    here = dict(lat="48.85", lng="2.35", location_name="Paris")
    photos = [str(post_photo(shutter, owner, **here)) for _ in range(3)]
    post_photo(shutter, private, **here)
    post_photo(shutter, owner, lat="40.7", lng="-74.0", location_name="New York")
    location = shutter.get(f"/v1/media/{photos[0]}", viewer).json["data"]["location"]["id"]
    path = f"/v1/locations/{location}/media/recent"
    assert pages(shutter, viewer, path, "location_media", "next_max_id", drop=f"lm:{location}",
                 count=2) == photos[::-1]
    assert pages(shutter, viewer, path, "location_media", "next_max_id", min_id=photos[0]) == photos[:0:-1]
    newer = str(post_photo(shutter, owner, **here))
    assert shutter.delete(f"/v1/media/{photos[1]}", owner).status_code == 200
    assert pages(shutter, viewer, path, "location_media", "next_max_id") == [newer, photos[2], photos[0]]
    assert_error(shutter.get("/v1/locations/1234567890123456789/media/recent", viewer), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/locations/x/media/recent", viewer), 400, "APIInvalidParametersError")


# -- GET /media/popular ----------------------------------------------------------------

def test_popular_warm_equals_the_long_way_and_applies_the_viewers_blocks(shutter):
    owner, blocker, liker, viewer = (shutter.account(n) for n in ("owner", "blocker", "liker", "viewer"))
    photos = [str(post_photo(shutter, who)) for who in (owner, blocker, owner)]
    for photo in photos:
        assert shutter.post(f"/v1/media/{photo}/likes", liker).status_code == 200
    assert shutter.post(f"/v1/media/{photos[2]}/comments", liker, text="top").status_code == 200  # the best
    services = services_of(shutter)
    with services.db.session() as session:
        assert popular.compute(session, services.redis) == 3
    ranked = [str(i) for i in popular.ranked_ids(services.redis, 10)]
    path = "/v1/media/popular"
    cold, warm = read_list(shutter, viewer, path, "popular")
    with statements(shutter) as sql:
        again, warm = read_list(shutter, viewer, path, "popular")
    assert warm and sql == [] and again.json == cold.json and ids_of(again) == ranked
    assert "pagination" not in again.json
    assert shutter.relate(blocker, viewer, "block").status_code == 200
    assert ids_of(read_list(shutter, viewer, path, "popular")[0]) == [i for i in ranked if i != photos[1]]
    assert shutter.delete(f"/v1/media/{photos[0]}", owner).status_code == 200
    response, _ = read_list(shutter, viewer, path, "popular")
    assert ids_of(response) == [photos[2]]
    again, warm = read_list(shutter, viewer, path, "popular", count=1)
    assert warm and ids_of(again) == [photos[2]]


# -- what the lists hold ------------------------------------------------------------------

def test_a_rebuild_that_raced_a_publish_is_refused(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    first = str(post_photo(shutter, owner))
    path = f"/v1/users/{owner.id}/media/recent"
    read_list(shutter, viewer, path, "user_media")
    services = services_of(shutter)
    key, lists = user_media_key(int(owner.id)), services.lists
    since = services.feeds.clocks.now()  # a reader's query starts, sees `first` only ...
    second = str(post_photo(shutter, owner))  # ... a publish commits and patches the list ...
    lists._store(key, [first], since)  # ... and the reader's store comes late: refused
    assert services.redis.zrange(key, 0, -1) == ["0", first, second]
    services.redis.delete(key)  # the same race on a list that is not built
    since = services.feeds.clocks.now()
    third = str(post_photo(shutter, owner))
    lists._store(key, [second, first], since)
    assert not services.redis.exists(key)
    assert ids_of(read_list(shutter, viewer, path, "user_media")[0]) == [third, second, first]
    response, warm = read_list(shutter, viewer, path, "user_media")
    assert warm and ids_of(response) == [third, second, first]


def test_a_long_list_keeps_its_newest_and_pages_past_them_the_long_way(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    services = services_of(shutter)
    services.lists.list_size = 3
    photos = [str(post_photo(shutter, owner)) for _ in range(5)]
    path = f"/v1/users/{owner.id}/media/recent"
    first, _ = read_list(shutter, viewer, path, "user_media", count=2)
    again, warm = read_list(shutter, viewer, path, "user_media", count=2)
    assert warm and again.json == first.json and ids_of(first) == photos[:2:-1]
    key = user_media_key(int(owner.id))
    assert services.redis.zrange(key, 0, -1) == ["0", "1", *photos[2:]]
    cursor = first.json["pagination"]["next_max_id"]
    for _ in range(2):  # past the newest 3: the long way, every time, and the same answer
        deeper, warm = read_list(shutter, viewer, path, "user_media", count=2, max_id=cursor)
        assert not warm and ids_of(deeper) == [photos[2], photos[1]]
    newest = str(post_photo(shutter, owner))
    assert services.redis.zrange(key, 0, -1) == ["0", "1", *photos[3:], newest]
    read_list(shutter, viewer, path, "user_media", count=2)
    response, warm = read_list(shutter, viewer, path, "user_media", count=2)
    assert warm and ids_of(response) == [newest, photos[4]]


def test_an_empty_list_is_warm_for_a_viewer_who_read_nothing_before(shutter):
    viewer = shutter.account("viewer")
    services_of(shutter).redis.delete("popular")
    for path, read in (("/v1/tags/nothing/media/recent", "tag_media"), ("/v1/media/popular", "popular"),
                       ("/v1/users/self/media/liked", "liked_media"), ("/v1/users/self/media/recent", "user_media")):
        cold, _ = read_list(shutter, viewer, path, read)
        with statements(shutter) as sql:
            again, warm = read_list(shutter, viewer, path, read)
        assert warm and sql == [] and again.json == cold.json and again.json["data"] == [], path
