"""The warm lists (app/reads/social.py): a photo's comments and likers, a user's
followers and followees, your follow requests. Warm, each read is one Redis
round trip with no SQL, page by page the same as the long way (cursors too),
and never stale after a comment, a like, a follow change, a block, a privacy
change or a rename. Which path answered is read off shutter_warm_reads_total."""
from __future__ import annotations

import pytest

from app.feeds.rendered import Miss
from app.platform import keys
from app.reads import social
from tests.support import Shutter, assert_error
from tests.test_feeds import follow, post_photo, services_of
from models import Photo
from tests.test_warm_media import statements, warm_reads

BASE = "http://shutter.test"


@pytest.fixture
def shutter(make_app):
    return Shutter(make_app().test_client())


LIST_PREFIXES = {"comments": keys.COMMENTS_LIST, "likes": keys.LIKES_LIST, "followed-by": keys.FOLLOWED_BY_LIST,
                 "follows": keys.FOLLOWS_LIST, "requested-by": keys.REQUESTED_BY_LIST}


def read_name(path: str) -> str:
    return path.strip("/").split("/")[3]


def get(shutter, account, path, expect=200, **params):
    """The response, and whether the warm path answered it."""
    before = warm_reads(read_name(path))
    response = shutter.get(path, account, **params)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response, warm_reads(read_name(path)) == before + 1


def long_way(shutter, account, path, **params):
    """The page from the database: the list dropped first, so the read misses (and stores it again)."""
    redis = services_of(shutter).redis
    for key in redis.scan_iter(f"{LIST_PREFIXES[read_name(path)]}*"):
        redis.delete(key)
    response, warm = get(shutter, account, path, **params)
    assert not warm
    return response


def warm_read(shutter, account, path, **params):
    """The page warm: one round trip, no SQL."""
    with statements(shutter) as sql:
        response, warm = get(shutter, account, path, **params)
    assert warm and sql == [], sql
    return response


def walk(shutter, account, path, cursor_name: str, param: str, count: int):
    """Every page, each read the long way then warm, and required equal; the warm pages' data."""
    pages, cursor = [], None
    while True:
        params = {"count": count, **({param: cursor} if cursor else {})}
        cold = long_way(shutter, account, path, **params)
        warm = warm_read(shutter, account, path, **params)
        assert warm.json == cold.json
        pages.append(warm.json["data"])
        cursor = (warm.json.get("pagination") or {}).get(cursor_name)
        if cursor is None:
            return pages


def names(response) -> list[str]:
    return [u["username"] for u in response.json["data"]]


# -- comments ------------------------------------------------------------------------

def test_comments_warm_page_by_page_equal_the_long_way(shutter):
    owner, viewer, a, b = (shutter.account(n) for n in ("owner", "viewer", "ann", "ben"))
    photo = post_photo(shutter, owner)
    texts = [f"comment {i} @ben" for i in range(7)]
    for i, text in enumerate(texts):
        assert shutter.post(f"/v1/media/{photo}/comments", (a, b, owner)[i % 3], text=text).status_code == 200
    pages = walk(shutter, viewer, f"/v1/media/{photo}/comments", "next_cursor", "cursor", 3)
    assert [[c["text"] for c in page] for page in pages] == [texts[0:3], texts[3:6], texts[6:7]]
    assert pages[0][0]["from"]["username"] == "ann"
    # The default page, and a cursor past the end, warm too.
    assert [c["text"] for c in warm_read(shutter, viewer, f"/v1/media/{photo}/comments").json["data"]] == texts
    last = pages[-1][-1]["id"]
    assert warm_read(shutter, viewer, f"/v1/media/{photo}/comments", cursor=last).json["data"] == []


def test_a_comment_or_its_deletion_shows_at_once(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    path = f"/v1/media/{photo}/comments"
    assert shutter.post(path, viewer, text="first").status_code == 200
    long_way(shutter, viewer, path)
    warm_read(shutter, viewer, path)
    second = shutter.post(path, owner, text="second").json["data"]["id"]
    after, _ = get(shutter, viewer, path)
    assert [c["text"] for c in after.json["data"]] == ["first", "second"]
    assert warm_read(shutter, viewer, path).json == after.json
    assert shutter.delete(f"{path}/{second}", owner).status_code == 200
    after, _ = get(shutter, viewer, path)
    assert [c["text"] for c in after.json["data"]] == ["first"]
    assert warm_read(shutter, viewer, path).json == after.json


# -- likes -----------------------------------------------------------------------------

def test_likes_warm_page_by_page_equal_the_long_way(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    likers = [shutter.account(f"liker{i}") for i in range(5)]
    photo = post_photo(shutter, owner)
    for liker in likers:
        assert shutter.post(f"/v1/media/{photo}/likes", liker).status_code == 200
    pages = walk(shutter, viewer, f"/v1/media/{photo}/likes", "next_max_like_id", "max_like_id", 2)
    assert [[u["username"] for u in page] for page in pages] == [
        ["liker4", "liker3"], ["liker2", "liker1"], ["liker0"]]


def test_a_like_or_unlike_shows_at_once(shutter):
    owner, viewer, liker = (shutter.account(n) for n in ("owner", "viewer", "liker"))
    photo = post_photo(shutter, owner)
    path = f"/v1/media/{photo}/likes"
    assert shutter.post(path, liker).status_code == 200
    long_way(shutter, viewer, path)
    warm_read(shutter, viewer, path)
    assert shutter.post(path, viewer).status_code == 200
    after, _ = get(shutter, viewer, path)
    assert names(after) == ["viewer", "liker"]
    assert warm_read(shutter, viewer, path).json == after.json
    assert shutter.delete(path, liker).status_code == 200
    after, _ = get(shutter, viewer, path)
    assert names(after) == ["viewer"]
    assert warm_read(shutter, viewer, path).json == after.json


@pytest.mark.parametrize("read", ["comments", "likes"])
def test_a_rename_shows_in_a_warm_photo_list_at_once(shutter, read):
    owner, viewer, other = (shutter.account(n) for n in ("owner", "viewer", "other"))
    photo = post_photo(shutter, owner)
    path = f"/v1/media/{photo}/{read}"
    assert shutter.post(path, other, **({"text": "hi"} if read == "comments" else {})).status_code == 200
    long_way(shutter, viewer, path)
    warm_read(shutter, viewer, path)
    assert shutter.post("/v1/users/self", other, full_name="Other Renamed").status_code == 200
    after, _ = get(shutter, viewer, path)
    summary = after.json["data"][0]["from"] if read == "comments" else after.json["data"][0]
    assert summary["full_name"] == "Other Renamed"
    assert warm_read(shutter, viewer, path).json == after.json


@pytest.mark.parametrize("read", ["comments", "likes"])
@pytest.mark.parametrize("blocker", ["owner", "viewer"])
def test_a_block_either_way_hides_a_warm_photo_list(shutter, read, blocker):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    path = f"/v1/media/{photo}/{read}"
    long_way(shutter, viewer, path)
    warm_read(shutter, viewer, path)
    who, whom = (owner, viewer) if blocker == "owner" else (viewer, owner)
    assert shutter.relate(who, whom, "block").status_code == 200
    for _ in range(2):  # twice: the miss stores nothing that opens it
        response, warm = get(shutter, viewer, path, expect=404 if blocker == "owner" else 400)
        assert not warm


@pytest.mark.parametrize("read", ["comments", "likes"])
def test_an_account_made_private_closes_its_warm_photo_lists_to_strangers(shutter, read):
    owner, stranger, follower = (shutter.account(n) for n in ("owner", "stranger", "follower"))
    follow(shutter, follower, owner)
    photo = post_photo(shutter, owner)
    path = f"/v1/media/{photo}/{read}"
    for who in (stranger, follower):
        get(shutter, who, path)
        warm_read(shutter, who, path)
    assert shutter.post("/v1/users/self", owner, is_private="true").status_code == 200
    for _ in range(2):
        assert_error(shutter.get(path, stranger), 400, "APINotAllowedError")
    get(shutter, follower, path)
    warm_read(shutter, follower, path)


def test_a_deleted_photo_has_no_warm_lists(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    for read in ("comments", "likes"):
        get(shutter, viewer, f"/v1/media/{photo}/{read}")
        warm_read(shutter, viewer, f"/v1/media/{photo}/{read}")
    assert shutter.delete(f"/v1/media/{photo}", owner).status_code == 200
    for read in ("comments", "likes"):
        assert_error(shutter.get(f"/v1/media/{photo}/{read}", viewer), 404, "APINotFoundError")


# -- follow lists ----------------------------------------------------------------------

def test_follow_lists_warm_page_by_page_equal_the_long_way(shutter):
    star, viewer = shutter.account("star"), shutter.account("viewer")
    fans = [shutter.account(f"fan{i}") for i in range(5)]
    for fan in fans:
        follow(shutter, fan, star)
        follow(shutter, star, fan)
    for path in (f"/v1/users/{star.id}/followed-by", f"/v1/users/{star.id}/follows"):
        pages = walk(shutter, viewer, path, "next_cursor", "cursor", 2)
        assert [[u["username"] for u in page] for page in pages] == [["fan4", "fan3"], ["fan2", "fan1"], ["fan0"]]
    # self, as its owner reads it
    pages = walk(shutter, star, "/v1/users/self/followed-by", "next_cursor", "cursor", 4)
    assert [len(page) for page in pages] == [4, 1]


def test_requests_warm_page_by_page_equal_the_long_way(shutter):
    star = shutter.account("star", private=True)
    askers = [shutter.account(f"asker{i}") for i in range(3)]
    for asker in askers:
        follow(shutter, asker, star)
    pages = walk(shutter, star, "/v1/users/self/requested-by", "next_cursor", "cursor", 2)
    assert [[u["username"] for u in page] for page in pages] == [["asker2", "asker1"], ["asker0"]]


def test_follow_changes_show_in_warm_follow_lists_at_once(shutter):
    star, viewer, fan, other = (shutter.account(n) for n in ("star", "viewer", "fan", "other"))
    followers, follows = f"/v1/users/{star.id}/followed-by", f"/v1/users/{fan.id}/follows"

    def check(path, expected):
        response, _ = get(shutter, viewer, path)
        assert names(response) == expected
        assert warm_read(shutter, viewer, path).json == response.json

    check(followers, [])
    check(follows, [])
    follow(shutter, fan, star)
    check(followers, ["fan"])
    check(follows, ["star"])
    follow(shutter, other, star)
    check(followers, ["other", "fan"])
    assert shutter.relate(fan, star, "unfollow").status_code == 200
    check(followers, ["other"])
    check(follows, [])
    follow(shutter, fan, star)
    assert shutter.relate(star, fan, "block").status_code == 200  # ends fan's follow
    check(followers, ["other"])
    check(follows, [])


def test_requests_approve_ignore_and_block_show_at_once(shutter):
    star = shutter.account("star", private=True)
    a, b, c = (shutter.account(n) for n in ("ann", "ben", "cat"))
    requests, followers, follows = "/v1/users/self/requested-by", "/v1/users/self/followed-by", \
        f"/v1/users/{a.id}/follows"

    def check(account, path, expected):
        response, _ = get(shutter, account, path)
        assert names(response) == expected
        assert warm_read(shutter, account, path).json == response.json

    check(star, requests, [])
    check(star, followers, [])
    check(a, follows, [])
    for asker in (a, b, c):
        follow(shutter, asker, star)
    check(star, requests, ["cat", "ben", "ann"])
    check(a, follows, [])  # a request is no follow
    assert shutter.relate(star, a, "approve").status_code == 200
    check(star, requests, ["cat", "ben"])
    check(star, followers, ["ann"])
    check(a, follows, ["star"])
    assert shutter.relate(star, b, "ignore").status_code == 200
    check(star, requests, ["cat"])
    assert shutter.relate(star, c, "block").status_code == 200
    check(star, requests, [])
    follow(shutter, b, star)
    check(star, requests, ["ben"])
    assert shutter.post("/v1/users/self", star, is_private="false").status_code == 200  # approves them all
    check(star, requests, [])
    check(star, followers, ["ben", "ann"])


def test_a_private_or_blocking_owner_closes_their_warm_follow_lists(shutter):
    owner, stranger, follower, fan = (shutter.account(n) for n in ("owner", "stranger", "follower", "fan"))
    follow(shutter, follower, owner)
    follow(shutter, fan, owner)
    path = f"/v1/users/{owner.id}/followed-by"
    for who in (stranger, follower):
        get(shutter, who, path)
        warm_read(shutter, who, path)
    assert shutter.post("/v1/users/self", owner, is_private="true").status_code == 200
    for _ in range(2):
        assert_error(shutter.get(path, stranger), 400, "APINotAllowedError")
        assert_error(shutter.get(f"/v1/users/{owner.id}/follows", stranger), 400, "APINotAllowedError")
    get(shutter, follower, path)
    warm_read(shutter, follower, path)
    assert shutter.relate(owner, follower, "block").status_code == 200
    for _ in range(2):
        assert_error(shutter.get(path, follower), 400, "APINotAllowedError")
    assert names(get(shutter, fan, path)[0]) == ["fan"]


def test_a_rename_shows_in_a_warm_follow_list_at_once(shutter):
    star, viewer, fan = (shutter.account(n) for n in ("star", "viewer", "fan"))
    follow(shutter, fan, star)
    path = f"/v1/users/{star.id}/followed-by"
    get(shutter, viewer, path)
    warm_read(shutter, viewer, path)
    assert shutter.post("/v1/users/self", fan, full_name="Fan Renamed").status_code == 200
    after, _ = get(shutter, viewer, path)
    assert after.json["data"][0]["full_name"] == "Fan Renamed"
    assert warm_read(shutter, viewer, path).json == after.json


def test_bad_input_and_unknown_subjects_answer_as_before(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    assert_error(shutter.get(f"/v1/media/{photo}/comments"), 400, "OAuthParameterException")
    assert_error(shutter.get(f"/v1/media/{photo}/comments", viewer, cursor="x"), 400, "APIInvalidParametersError")
    assert_error(shutter.get(f"/v1/media/{photo}/likes", viewer, max_like_id="x"), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/media/nope/likes", viewer), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/media/1234567890123456789/likes", viewer), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/users/nope/followed-by", viewer), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/1234567890123456789/follows", viewer), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/users/self/requested-by", viewer, cursor="x"), 400, "APIInvalidParametersError")
    # A bad or missing token is said before bad input, as under require_token.
    for path in (f"/v1/media/{photo}/comments", f"/v1/media/{photo}/likes", f"/v1/users/{owner.id}/follows",
                 f"/v1/users/{owner.id}/followed-by", "/v1/users/self/requested-by"):
        for bad in ({"cursor": "x", "max_like_id": "x"}, {"count": "0"}):
            assert_error(shutter.get(path, access_token="bad", **bad), 400, "OAuthAccessTokenException")
            assert_error(shutter.get(path, **bad), 400, "OAuthParameterException")


# -- the rules of the store ------------------------------------------------------------

def test_a_rebuild_that_started_before_a_commit_is_not_stored(shutter):
    owner, viewer, fan = (shutter.account(n) for n in ("owner", "viewer", "fan"))
    photo = post_photo(shutter, owner)
    svc = services_of(shutter)
    token_key = svc.tokens.key(viewer.token)
    likes_miss = svc.social_lists.likes(token_key, photo, 20, None, BASE)
    followers_miss = svc.social_lists.follow_list("followed-by", token_key, int(owner.id), 20, None, BASE)
    assert isinstance(likes_miss, Miss) and isinstance(followers_miss, Miss)
    # Committed after those reads missed, before they store what they read.
    assert shutter.post(f"/v1/media/{photo}/likes", fan).status_code == 200
    follow(shutter, fan, owner)
    with shutter.client.application.app_context(), svc.db.session() as session:
        svc.social_lists.likes_page(session, int(viewer.id), likes_miss, session.get(Photo, photo), 20, None, BASE)
        svc.social_lists.warm_follow_list(session, int(viewer.id), followers_miss, "followed-by", int(owner.id), BASE)
    for key in (keys.likes_list_key(photo), f"{keys.FOLLOWED_BY_LIST}{owner.id}"):
        assert svc.redis.get(key).startswith("~")  # the writers' tombstones stand
    assert names(get(shutter, viewer, f"/v1/media/{photo}/likes")[0]) == ["fan"]
    assert names(warm_read(shutter, viewer, f"/v1/media/{photo}/likes")) == ["fan"]


def test_pages_past_a_truncated_list_are_the_databases(shutter, monkeypatch):
    monkeypatch.setattr(social, "LIST_LIMIT", 3)  # the stored rows per list, small enough to pass
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    photo = post_photo(shutter, owner)
    path = f"/v1/media/{photo}/comments"
    for i in range(5):
        assert shutter.post(path, owner, text=f"c{i}").status_code == 200
    first = long_way(shutter, viewer, path, count=2)
    assert warm_read(shutter, viewer, path, count=2).json == first.json
    cursor = first.json["pagination"]["next_cursor"]
    # c2 is stored but c3 is not: whether more follow is the database's to say
    second, warm = get(shutter, viewer, path, count=2, cursor=cursor)
    assert not warm and [c["text"] for c in second.json["data"]] == ["c2", "c3"]
    assert not get(shutter, viewer, path, count=1, cursor=cursor)[1]  # c3 would tell whether more follow
    # Within what is stored, warm: c1, and c2 says more follow.
    within = warm_read(shutter, viewer, path, count=1, cursor=first.json["data"][0]["id"])
    assert [c["text"] for c in within.json["data"]] == ["c1"] and within.json["pagination"]["next_cursor"]
