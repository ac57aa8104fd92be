"""The social loop (issue 4): likes, comments, tags, mentions, media lists,
popular and the activity feed, on both stacks.

Photos are made ready by calling the pipeline service functions with the
app's own services: no worker is needed.
"""
from __future__ import annotations

import dataclasses
import io
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from app.engagement import popular
from app.media import pipeline
from app.platform import text
from app.platform.keys import rendered_media_key
from models import Photo, Tag, utcnow
from models.ids import LAST_ID_SECOND
from tests import images
from tests.support import Shutter, assert_error

SMALL_JPEG = images.jpeg(160, 120)


@pytest.fixture
def settings(settings):
    # The concurrency tests sign up more accounts than the production limit allows an IP.
    return dataclasses.replace(settings, signup_rate_limit="1000/minute", login_rate_limit="1000/minute")


# --- helpers ---------------------------------------------------------------


def services_of(app):
    return app.extensions["shutter"]


def photo_id(media_id: str) -> int:
    return int(media_id.split("_")[0])


def post_photo(app, shutter: Shutter, account, *, ready: bool = True, **fields) -> str:
    """Upload a photo (and publish it unless ready=False); its media id."""
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(SMALL_JPEG), "p.jpg")}, **fields)
    assert response.status_code == 202, response.get_data(as_text=True)
    media_id = response.json["data"]["id"]
    if ready:
        publish(app, media_id)
    return media_id


def publish(app, media_id: str) -> None:
    services = services_of(app)
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id(media_id))
        assert pipeline.publish_photo(session, services.celery, photo_id(media_id))


def media(shutter, account, media_id) -> dict:
    response = shutter.get(f"/v1/media/{media_id}", account)
    assert response.status_code == 200, response.json
    return response.json["data"]


def ok_data(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["meta"]["code"] == 200
    return response.json["data"]


def walk(shutter, path, account, cursor_name, url_param, **params) -> list[list[str]]:
    """Every page of a paginated list, following `pagination` to the end."""
    pages = []
    while True:
        response = shutter.get(path, account, **params)
        pages.append([item["id"] for item in ok_data(response)])
        cursor = response.json.get("pagination", {}).get(cursor_name)
        if cursor is None:
            return pages
        assert response.json["pagination"]["next_url"]
        params[url_param] = cursor


def activity(shutter, account, **params) -> list[dict]:
    return ok_data(shutter.get("/v1/users/self/activity", account, **params))


def kinds(items) -> list[tuple[str, str]]:
    return [(a["type"], a["from"]["username"]) for a in items]


def run_threads(app, jobs, workers: int = 20) -> list:
    """Run each job (a function of a Shutter client) on one of `workers` threads at once."""
    barrier = threading.Barrier(workers)
    results, lock = [], threading.Lock()

    def worker(mine):
        own = Shutter(app.test_client())  # a test client per thread
        barrier.wait()
        for job in mine:
            response = job(own)
            with lock:
                results.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(jobs[i::workers],)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    return results


# --- parsing ---------------------------------------------------------------


def test_tags_and_mentions_are_parsed_from_text():
    caption = "#Sunset at the #beach, #sunset again! mail@x.com a#b #café #" + "x" * 101 + " #under_score"
    assert text.tags(caption) == ["sunset", "beach", "café", "under_score"]
    assert text.mentions("hi @Bob and @carol.smith. and @bob again, not x@dave or @" + "y" * 31) == [
        "bob", "carol.smith"]
    assert text.normal_tag_name("Summer_2015") == "summer_2015"
    assert text.normal_tag_name("no-dash") is None
    assert text.normal_tag_name("x" * 101) is None


# --- likes -----------------------------------------------------------------


def test_like_unlike_and_list_likes(app, shutter):
    alice, bob, carol = shutter.account("alice"), shutter.account("bob"), shutter.account("carol")
    media_id = post_photo(app, shutter, alice)
    assert ok_data(shutter.post(f"/v1/media/{media_id}/likes", bob)) is None
    assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200  # twice: nothing changes
    assert shutter.post(f"/v1/media/{media_id}/likes", carol).status_code == 200
    seen = media(shutter, bob, media_id)
    assert seen["likes"]["count"] == 2
    assert [u["username"] for u in seen["likes"]["data"]] == ["carol", "bob"]
    assert seen["user_has_liked"] is True
    assert media(shutter, alice, media_id)["user_has_liked"] is False
    likers = ok_data(shutter.get(f"/v1/media/{media_id}/likes", alice))
    assert [u["username"] for u in likers] == ["carol", "bob"]
    assert set(likers[0]) == {"id", "username", "full_name", "profile_picture"}

    assert shutter.delete(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert shutter.delete(f"/v1/media/{media_id}/likes", bob).status_code == 200  # twice: nothing changes
    seen = media(shutter, bob, media_id)
    assert seen["likes"]["count"] == 1 and seen["user_has_liked"] is False


def test_likes_of_a_popular_photo_show_the_four_newest(app, shutter):
    alice = shutter.account("alice")
    media_id = post_photo(app, shutter, alice)
    fans = [shutter.account(f"fan{i}") for i in range(6)]
    for fan in fans:
        assert shutter.post(f"/v1/media/{media_id}/likes", fan).status_code == 200
    seen = media(shutter, alice, media_id)
    assert seen["likes"]["count"] == 6
    assert [u["username"] for u in seen["likes"]["data"]] == ["fan5", "fan4", "fan3", "fan2"]
    pages = walk(shutter, f"/v1/media/{media_id}/likes", alice, "next_max_like_id", "max_like_id", count=4)
    assert [len(p) for p in pages] == [4, 2]
    assert sum(pages, []) == [f.id for f in reversed(fans)]


def test_like_needs_a_token_with_the_likes_scope(app, shutter):
    alice = shutter.account("alice")
    reader = shutter.account("reader", scope="basic comments")
    media_id = post_photo(app, shutter, alice)
    assert_error(shutter.post(f"/v1/media/{media_id}/likes"), 400, "OAuthParameterException")
    assert_error(shutter.post(f"/v1/media/{media_id}/likes", access_token="nope"), 400, "OAuthAccessTokenException")
    assert_error(shutter.post(f"/v1/media/{media_id}/likes", reader), 400, "OAuthPermissionsException")
    assert_error(shutter.delete(f"/v1/media/{media_id}/likes", reader), 400, "OAuthPermissionsException")
    assert ok_data(shutter.get(f"/v1/media/{media_id}/likes", reader)) == []  # reading needs basic only


@pytest.mark.parametrize("bad", ["abc", "12x_3", "99999999999999999999999"])
def test_bad_media_ids_are_400(shutter, bad):
    alice = shutter.account("alice")
    for call in (shutter.get, shutter.post):
        assert_error(call(f"/v1/media/{bad}/likes", alice), 400, "APIInvalidParametersError")
        assert_error(call(f"/v1/media/{bad}/comments", alice, text="hi"), 400, "APIInvalidParametersError")


def test_unknown_and_unpublished_media_are_404(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    assert_error(shutter.post("/v1/media/123_456/likes", bob), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/media/123/comments", bob), 404, "APINotFoundError")
    processing = post_photo(app, shutter, alice, ready=False)
    assert_error(shutter.post(f"/v1/media/{processing}/likes", bob), 404, "APINotFoundError")
    # The owner sees it processing, but nobody acts on it before it is published.
    assert_error(shutter.post(f"/v1/media/{processing}/likes", alice), 400, "APINotAllowedError")


def test_private_and_blocked_media_cannot_be_liked_or_read(app, shutter):
    alice, bob = shutter.account("alice", private=True), shutter.account("bob")
    media_id = post_photo(app, shutter, alice)
    assert_error(shutter.post(f"/v1/media/{media_id}/likes", bob), 400, "APINotAllowedError")
    assert_error(shutter.get(f"/v1/media/{media_id}/likes", bob), 400, "APINotAllowedError")
    assert_error(shutter.post(f"/v1/media/{media_id}/comments", bob, text="hi"), 400, "APINotAllowedError")
    assert_error(shutter.get(f"/v1/users/{alice.id}/media/recent", bob), 400, "APINotAllowedError")
    assert shutter.relate(bob, alice, "follow").status_code == 200
    assert shutter.relate(alice, bob, "approve").status_code == 200
    assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert len(ok_data(shutter.get(f"/v1/users/{alice.id}/media/recent", bob))) == 1
    assert shutter.relate(alice, bob, "block").status_code == 200
    assert_error(shutter.post(f"/v1/media/{media_id}/likes", bob), 404, "APINotFoundError")
    assert_error(shutter.get(f"/v1/users/{alice.id}/media/recent", bob), 404, "APINotFoundError")
    assert ok_data(shutter.get("/v1/users/self/media/liked", bob)) == []  # liked, but no longer visible


# --- comments --------------------------------------------------------------


def test_comment_list_and_delete(app, shutter):
    alice, bob, carol = shutter.account("alice"), shutter.account("bob"), shutter.account("carol")
    media_id = post_photo(app, shutter, alice)
    first = ok_data(shutter.post(f"/v1/media/{media_id}/comments", bob, text="first!"))
    assert first["text"] == "first!" and first["from"]["username"] == "bob"
    assert set(first) == {"id", "created_time", "text", "from"}
    second = ok_data(shutter.post(f"/v1/media/{media_id}/comments", carol, text="x" * 300))
    listed = ok_data(shutter.get(f"/v1/media/{media_id}/comments", alice))
    assert [c["id"] for c in listed] == [first["id"], second["id"]]  # oldest first, as v1
    seen = media(shutter, alice, media_id)
    assert seen["comments"]["count"] == 2
    assert [c["text"] for c in seen["comments"]["data"]] == ["first!", "x" * 300]

    # Someone else's comment on someone else's media: not yours to delete.
    assert_error(shutter.delete(f"/v1/media/{media_id}/comments/{first['id']}", carol), 403, "APINotAllowedError")
    assert_error(shutter.delete(f"/v1/media/{media_id}/comments/999"), 400, "OAuthParameterException")
    assert_error(shutter.delete(f"/v1/media/{media_id}/comments/999", bob), 404, "APINotFoundError")
    assert_error(shutter.delete(f"/v1/media/{media_id}/comments/x", bob), 400, "APIInvalidParametersError")
    other = post_photo(app, shutter, alice)  # the comment belongs to another photo
    assert_error(shutter.delete(f"/v1/media/{other}/comments/{first['id']}", bob), 404, "APINotFoundError")
    assert shutter.delete(f"/v1/media/{media_id}/comments/{first['id']}", bob).status_code == 200  # its author
    assert shutter.delete(f"/v1/media/{media_id}/comments/{second['id']}", alice).status_code == 200  # the owner
    assert media(shutter, alice, media_id)["comments"] == {"count": 0, "data": []}


@pytest.mark.parametrize("body, message", [("", "text"), ("   ", "text"), ("x" * 301, "text"), (None, "text")])
def test_bad_comments_are_refused(app, shutter, body, message):
    alice = shutter.account("alice")
    media_id = post_photo(app, shutter, alice)
    fields = {} if body is None else {"text": body}
    meta = assert_error(shutter.post(f"/v1/media/{media_id}/comments", alice, **fields), 400,
                        "APIInvalidParametersError")
    assert message in meta["error_message"]
    assert media(shutter, alice, media_id)["comments"]["count"] == 0


def test_comment_needs_the_comments_scope(app, shutter):
    alice = shutter.account("alice", scope="basic likes publish")
    media_id = post_photo(app, shutter, alice)
    assert_error(shutter.post(f"/v1/media/{media_id}/comments", alice, text="hi"), 400, "OAuthPermissionsException")


def test_comment_pages_have_no_gaps(app, shutter):
    alice = shutter.account("alice")
    media_id = post_photo(app, shutter, alice)
    ids = [ok_data(shutter.post(f"/v1/media/{media_id}/comments", alice, text=f"c{i}"))["id"] for i in range(7)]
    pages = walk(shutter, f"/v1/media/{media_id}/comments", alice, "next_cursor", "cursor", count=3)
    assert [len(p) for p in pages] == [3, 3, 1] and sum(pages, []) == ids


# --- tags and mentions -----------------------------------------------------


def test_caption_tags_count_published_photos_only(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    media_id = post_photo(app, shutter, alice, ready=False, caption="#Sunset at the #beach with @bob #sunset")
    assert ok_data(shutter.get("/v1/tags/sunset", bob)) == {"name": "sunset", "media_count": 0}
    publish(app, media_id)
    assert ok_data(shutter.get("/v1/tags/SUNSET", bob)) == {"name": "sunset", "media_count": 1}
    assert media(shutter, bob, media_id)["tags"] == ["beach", "sunset"]
    assert [t["name"] for t in ok_data(shutter.get("/v1/tags/search", bob, q="#sun"))] == ["sunset"]
    # A comment's tags do not link the photo (v1 linked caption tags only).
    shutter.post(f"/v1/media/{media_id}/comments", bob, text="#beach #night")
    assert ok_data(shutter.get("/v1/tags/night", bob))["media_count"] == 0
    assert shutter.delete(f"/v1/media/{media_id}", alice).status_code == 200
    assert ok_data(shutter.get("/v1/tags/sunset", bob))["media_count"] == 0
    assert ok_data(shutter.get("/v1/tags/beach", bob))["media_count"] == 0
    assert ok_data(shutter.get("/v1/tags/search", bob, q="sun")) == []


def test_bad_tag_names_are_400(shutter):
    alice = shutter.account("alice")
    assert_error(shutter.get("/v1/tags/no-dash", alice), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/tags/" + "x" * 101, alice), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/tags/search", alice), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/tags/search", alice, q="a b"), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/tags/x/media/recent", alice, max_tag_id="x"), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/tags/x"), 400, "OAuthParameterException")


def test_tag_media_pages_without_gaps_and_hide_what_the_viewer_may_not_see(app, shutter):
    alice, bob, carol = shutter.account("alice"), shutter.account("bob"), shutter.account("carol", private=True)
    mine = [post_photo(app, shutter, alice, caption=f"day {i} #loop") for i in range(5)]
    post_photo(app, shutter, carol, caption="#loop secret")
    post_photo(app, shutter, alice, caption="#other")
    pages = walk(shutter, "/v1/tags/loop/media/recent", bob, "next_max_tag_id", "max_tag_id", count=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == list(reversed(mine))
    assert ok_data(shutter.get("/v1/tags/loop", bob))["media_count"] == 6  # counts every published photo
    newer = ok_data(shutter.get("/v1/tags/loop/media/recent", bob, min_tag_id=photo_id(mine[2])))
    assert [m["id"] for m in newer] == [mine[4], mine[3]]
    assert ok_data(shutter.get("/v1/tags/nothing/media/recent", bob)) == []


def test_mentions_make_activity_for_existing_users_who_may_see_the_photo(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    carol = shutter.account("carol")
    hidden = shutter.account("hidden", private=True)
    media_id = post_photo(app, shutter, alice, ready=False, caption="with @bob @ghost @alice")
    assert activity(shutter, bob) == []  # not before the photo is published
    publish(app, media_id)
    assert kinds(activity(shutter, bob)) == [("mention", "alice")]
    assert activity(shutter, alice) == []  # no self-activity
    secret = post_photo(app, shutter, hidden, caption="@carol can't see this")
    assert activity(shutter, carol) == []
    comment = ok_data(shutter.post(f"/v1/media/{media_id}/comments", bob, text="thanks @carol and @alice"))
    carol_sees = activity(shutter, carol)
    assert kinds(carol_sees) == [("mention", "bob")]
    assert carol_sees[0]["media"]["id"] == media_id and carol_sees[0]["comment"]["id"] == comment["id"]
    assert kinds(activity(shutter, alice)) == [("comment", "bob")]  # the owner: no mention on top
    shutter.delete(f"/v1/media/{media_id}/comments/{comment['id']}", bob)
    assert activity(shutter, carol) == [] and activity(shutter, alice) == []
    assert secret


# --- media lists -----------------------------------------------------------


def test_user_media_recent_pages_and_filters(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    ids = [post_photo(app, shutter, alice) for _ in range(5)]
    processing = post_photo(app, shutter, alice, ready=False)
    pages = walk(shutter, f"/v1/users/{alice.id}/media/recent", bob, "next_max_id", "max_id", count=2)
    assert sum(pages, []) == list(reversed(ids)) and [len(p) for p in pages] == [2, 2, 1]
    own = ok_data(shutter.get("/v1/users/self/media/recent", alice))
    assert processing not in [m["id"] for m in own] and len(own) == 5  # published only, even to the owner
    newer = ok_data(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, min_id=ids[3]))
    assert [m["id"] for m in newer] == [ids[4]]
    # Timestamps: everything is from now; an hour ago or a future bound.
    with services_of(app).db.session() as session:
        created = session.get(Photo, photo_id(ids[0])).created_at
    now = int(created.timestamp())
    assert len(ok_data(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, min_timestamp=now - 60))) == 5
    assert ok_data(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, max_timestamp=now - 3600)) == []
    assert ok_data(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, min_timestamp=now + 3600)) == []
    assert_error(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, count=0), 400, "APIInvalidParametersError")
    assert_error(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, count=101), 400, "APIInvalidParametersError")
    assert_error(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, max_timestamp="x"), 400,
                 "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/12345/media/recent", bob), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/users/abc/media/recent", bob), 400, "APIInvalidParametersError")


def test_timestamps_past_the_last_second_an_id_can_hold_are_400(shutter):
    # Found by test_fuzz.py: max_timestamp=2**40 (the old bound) made an id bound over
    # 2**63 - 1, which the database cannot take (OverflowError on SQLite: a 500).
    alice = shutter.account("alice")
    for name in ["max_timestamp", "min_timestamp"]:
        assert shutter.get("/v1/users/self/media/recent", alice, **{name: LAST_ID_SECOND}).status_code == 200
        assert_error(shutter.get("/v1/users/self/media/recent", alice, **{name: LAST_ID_SECOND + 1}), 400,
                     "APIInvalidParametersError")
        assert_error(shutter.get("/v1/users/self/media/recent", alice, **{name: 2**40}), 400,
                     "APIInvalidParametersError")


def test_liked_media_pages_without_gaps(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    ids = [post_photo(app, shutter, alice) for _ in range(5)]
    for media_id in (ids[2], ids[0], ids[4], ids[1], ids[3]):
        assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    pages = walk(shutter, "/v1/users/self/media/liked", bob, "next_max_like_id", "max_like_id", count=2)
    assert sum(pages, []) == [ids[3], ids[1], ids[4], ids[0], ids[2]]  # newest like first
    assert [len(p) for p in pages] == [2, 2, 1]
    first = ok_data(shutter.get("/v1/users/self/media/liked", bob, count=1))[0]
    assert first["user_has_liked"] is True and first["likes"]["count"] == 1


def test_locations_and_their_media(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    media_id = post_photo(app, shutter, alice, lat="48.8584", lng="2.2945", location_name="Eiffel Tower")
    post_photo(app, shutter, alice)
    location = media(shutter, bob, media_id)["location"]
    assert location["name"] == "Eiffel Tower"
    assert ok_data(shutter.get(f"/v1/locations/{location['id']}", bob)) == location
    listed = ok_data(shutter.get(f"/v1/locations/{location['id']}/media/recent", bob))
    assert [m["id"] for m in listed] == [media_id]
    assert_error(shutter.get("/v1/locations/42", bob), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/locations/abc/media/recent", bob), 400, "APIInvalidParametersError")


def test_media_objects_cost_the_same_queries_for_one_photo_or_many(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    ids = [post_photo(app, shutter, alice, caption="#one @bob") for _ in range(6)]
    for media_id in ids:
        shutter.post(f"/v1/media/{media_id}/likes", bob)
        shutter.post(f"/v1/media/{media_id}/comments", bob, text="hi")
    engine = services_of(app).db.engine
    statements = []

    def count(*_args):
        statements.append(1)

    def queries(n, long_way=True):
        statements.clear()
        if long_way:  # the photos' rendered copies go too, or the warm read answers (app/reads/lists.py)
            services_of(app).cache.delete_many([f"p:{photo_id(i)}" for i in ids] + [f"u:{alice.id}", f"u:{bob.id}"])
            services_of(app).redis.delete(*(rendered_media_key(photo_id(i)) for i in ids))
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert len(ok_data(shutter.get(f"/v1/users/{alice.id}/media/recent", bob, count=n))) == n
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    # A first read builds what the warm reads keep of the viewer and the list, once: not measured.
    shutter.get(f"/v1/users/{alice.id}/media/recent", bob)
    assert queries(1) == queries(6)
    assert queries(1, long_way=False) == queries(6, long_way=False) == 0


# --- activity --------------------------------------------------------------


def test_activity_feed_of_likes_comments_and_follows(app, shutter):
    alice, bob = shutter.account("alice", private=True), shutter.account("bob")
    carol = shutter.account("carol")
    assert shutter.relate(bob, alice, "follow").status_code == 200
    assert kinds(activity(shutter, alice)) == [("follow_request", "bob")]
    assert shutter.relate(alice, bob, "approve").status_code == 200
    assert kinds(activity(shutter, alice)) == [("follow", "bob")]  # the request became a follow
    media_id = post_photo(app, shutter, alice)
    shutter.post(f"/v1/media/{media_id}/likes", alice)  # your own: no activity
    shutter.post(f"/v1/media/{media_id}/likes", bob)
    shutter.post(f"/v1/media/{media_id}/comments", bob, text="lovely")
    shutter.post(f"/v1/media/{media_id}/comments", alice, text="thanks")
    assert shutter.relate(carol, alice, "follow").status_code == 200
    items = activity(shutter, alice)
    assert kinds(items) == [("follow_request", "carol"), ("comment", "bob"), ("like", "bob"), ("follow", "bob")]
    assert set(items[1]) == {"id", "type", "created_time", "from", "media", "comment"}
    assert items[1]["media"]["id"] == media_id and items[1]["comment"]["text"] == "lovely"
    assert items[0]["media"] is None and items[2]["comment"] is None
    # Taking things back removes their activity.
    shutter.delete(f"/v1/media/{media_id}/likes", bob)
    assert shutter.relate(alice, carol, "ignore").status_code == 200
    assert shutter.relate(bob, alice, "unfollow").status_code == 200
    assert kinds(activity(shutter, alice)) == [("comment", "bob")]


def test_activity_pages_without_gaps_and_survive_a_flushed_redis(app, shutter):
    alice = shutter.account("alice")
    fans = [shutter.account(f"fan{i}") for i in range(5)]
    media_ids = [post_photo(app, shutter, alice) for _ in range(2)]
    for fan in fans:
        for media_id in media_ids:
            assert shutter.post(f"/v1/media/{media_id}/likes", fan).status_code == 200
    pages = walk(shutter, "/v1/users/self/activity", alice, "next_max_id", "max_id", count=3)
    ids = sum(pages, [])
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert ids == sorted(ids, key=int, reverse=True) and len(set(ids)) == 10

    services_of(app).redis.flushdb()
    assert sum(walk(shutter, "/v1/users/self/activity", alice, "next_max_id", "max_id", count=4), []) == ids
    # After the rebuild new activity still arrives, and the copy is capped.
    assert ok_data(shutter.post(f"/v1/media/{media_ids[0]}/comments", fans[0], text="again"))
    assert kinds(activity(shutter, alice, count=1)) == [("comment", "fan0")]
    assert_error(shutter.get("/v1/users/self/activity", alice, max_id="x"), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/self/activity"), 400, "OAuthParameterException")


def test_activity_beyond_the_redis_cap_is_read_from_the_database(app, shutter, monkeypatch):
    from app.engagement import activity as activity_service

    monkeypatch.setattr(activity_service, "CAP", 3)
    alice = shutter.account("alice")
    fans = [shutter.account(f"fan{i}") for i in range(4)]
    media_ids = [post_photo(app, shutter, alice) for _ in range(2)]
    for fan in fans:
        for media_id in media_ids:
            shutter.post(f"/v1/media/{media_id}/likes", fan)
    assert services_of(app).redis.zcard(f"activity:{alice.id}") <= 3 + 1
    pages = walk(shutter, "/v1/users/self/activity", alice, "next_max_id", "max_id", count=2)
    ids = sum(pages, [])
    assert len(ids) == 8 and len(set(ids)) == 8 and ids == sorted(ids, key=int, reverse=True)


# --- counts under concurrency ----------------------------------------------


def test_concurrent_likes_and_double_likes_are_counted_exactly(app, shutter):
    alice = shutter.account("alice")
    media_id = post_photo(app, shutter, alice)
    fans = [shutter.account(f"fan{i}") for i in range(20)]
    path = f"/v1/media/{media_id}/likes"
    codes = run_threads(app, [lambda c, f=f: c.post(path, f) for f in fans for _ in range(2)])
    assert codes == [200] * 40
    assert media(shutter, alice, media_id)["likes"]["count"] == 20
    with services_of(app).db.session() as session:
        assert session.get(Photo, photo_id(media_id)).like_count == 20
    assert len(ok_data(shutter.get(path, alice, count=100))) == 20
    assert len(activity(shutter, alice, count=100)) == 20

    codes = run_threads(app, [lambda c, f=f: c.delete(path, f)
                              for f in fans for _ in range(2)])
    assert codes == [200] * 40
    assert media(shutter, alice, media_id)["likes"] == {"count": 0, "data": []}
    assert activity(shutter, alice) == []


def test_concurrent_comments_are_counted_exactly(app, shutter):
    alice = shutter.account("alice")
    media_id = post_photo(app, shutter, alice)
    fans = [shutter.account(f"fan{i}") for i in range(20)]
    path = f"/v1/media/{media_id}/comments"
    codes = run_threads(app, [lambda c, f=f: c.post(path, f, text="wow")
                              for f in fans])
    assert codes == [200] * 20
    comments = ok_data(shutter.get(path, alice, count=100))
    assert len(comments) == 20
    # The owner and each author delete the same comment at once: one delete counts.
    authors = {f.id: f for f in fans}
    jobs = []
    for comment in comments:
        url, fan = f"{path}/{comment['id']}", authors[comment["from"]["id"]]
        jobs += [lambda c, u=url, f=fan: c.delete(u, f),
                 lambda c, u=url: c.delete(u, alice)]
    codes = run_threads(app, jobs)
    assert set(codes) <= {200, 404}
    assert media(shutter, alice, media_id)["comments"]["count"] == 0


# --- popular ---------------------------------------------------------------


def test_popular_ranks_recent_public_photos_by_engagement_with_decay(app, shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    carol = shutter.account("carol", private=True)
    fans = [shutter.account(f"fan{i}") for i in range(3)]
    quiet, liked, talked, old = (post_photo(app, shutter, alice) for _ in range(4))
    private = post_photo(app, shutter, carol)
    for fan in fans:
        shutter.post(f"/v1/media/{liked}/likes", fan)
        shutter.post(f"/v1/media/{old}/likes", fan)
    for fan in fans[:2]:
        shutter.post(f"/v1/media/{talked}/comments", fan, text="!")  # 2 comments = 4 points > 3 likes
    shutter.post(f"/v1/media/{private}/likes", alice)
    services = services_of(app)
    with services.db.session() as session:
        # `old` is three days old: outside the window however liked it is.
        session.execute(update(Photo).where(Photo.id == photo_id(old))
                        .values(created_at=utcnow() - timedelta(days=3)))
        session.commit()
        assert popular.compute(session, services.redis) == 2
    ranked = ok_data(shutter.get("/v1/media/popular", bob))
    assert [m["id"] for m in ranked] == [talked, liked]
    assert quiet not in [m["id"] for m in ranked]
    # The viewer's blocks apply on read.
    assert shutter.relate(alice, bob, "block").status_code == 200
    assert ok_data(shutter.get("/v1/media/popular", bob)) == []
    # Decay: the same engagement counts for less as time passes.
    assert popular.score(10, 0, 0) > popular.score(10, 0, 5) > popular.score(10, 0, 24)
    assert popular.score(0, 1, 1) == popular.score(2, 0, 1)


def test_popular_is_empty_before_the_first_computation(shutter):
    alice = shutter.account("alice")
    assert ok_data(shutter.get("/v1/media/popular", alice)) == []
    assert_error(shutter.get("/v1/media/popular"), 400, "OAuthParameterException")


def test_tag_rows_are_created_once_per_name(app, shutter):
    alice = shutter.account("alice")
    post_photo(app, shutter, alice, caption="#Same #same #SAME")
    post_photo(app, shutter, alice, caption="#same")
    with services_of(app).db.session() as session:
        assert [(t.name, t.media_count) for t in session.scalars(select(Tag))] == [("same", 2)]
