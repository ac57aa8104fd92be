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


def pages(shutter, account, path, read, cursor, **params):
    """Every page of the list, each read twice: the first (cold or warm) must equal the
    second, which must be warm with no SQL. The pages' ids, newest first."""
    ids = []
    while True:
        first, _ = read_list(shutter, account, path, read, **params)
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
