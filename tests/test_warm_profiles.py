"""The warm profile reads (app/reads/profiles.py): GET /users/{id} and /users/self
in one Redis round trip and no SQL, the same answer as the long way, and never
stale after a change of what they show: profile fields, the three counts (follows,
unfollows, approvals, blocks, photos published and deleted), blocks and privacy.
Which path answered is read off shutter_warm_reads_total, as in test_warm_media."""
from __future__ import annotations

import pytest

from app.feeds.rendered import Miss, Rendered
from app.platform.keys import activity_key, activity_seen_key, rendered_profile_key
from app.social.relationships import relationship
from app.social.visibility import is_blocked
from models import User
from tests.support import Shutter, assert_error
from tests.test_feeds import follow, post_photo, services_of
from tests.test_warm_media import statements, warm_reads


@pytest.fixture
def shutter(make_app):
    return Shutter(make_app().test_client())


def get_profile(shutter, account, user="self", expect=200):
    """The profile read's response, and whether the warm path answered it."""
    before = warm_reads("profile")
    response = shutter.get(f"/v1/users/{user}", account)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response, warm_reads("profile") == before + 1


def warm_profile(shutter, account, user="self"):
    """The profile, read until the warm path answers it (the second read at the
    latest: the first one's long way stores what it needs)."""
    first, warm = get_profile(shutter, account, user)
    if warm:
        return first.json["data"]
    again, warm = get_profile(shutter, account, user)
    assert warm, "the read after a miss is warm"
    assert again.json == first.json
    return again.json["data"]


def counts(shutter, account, user="self") -> dict:
    return warm_profile(shutter, account, user)["counts"]


def cold_then_warm(shutter, account, user):
    """The first read (the long way) and the second (warm, with no SQL); equal."""
    cold, warm_path = get_profile(shutter, account, user)
    assert not warm_path
    with statements(shutter) as sql:
        warm, warm_path = get_profile(shutter, account, user)
    assert warm_path and sql == []
    assert warm.json == cold.json
    assert warm.get_data(as_text=True).startswith('{"meta":{"code":200},"data":{')
    return warm.json


def test_a_warm_profile_read_runs_no_sql_and_equals_the_long_way(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    follow(shutter, viewer, owner)
    post_photo(shutter, owner)
    assert shutter.post("/v1/users/self", owner, bio="hello", website="https://example.com").status_code == 200
    theirs = cold_then_warm(shutter, viewer, owner.id)
    assert cold_then_warm(shutter, viewer, "self")["data"]["counts"] == {"media": 0, "follows": 1, "followed_by": 0}
    for user in ("self", owner.id):  # the owner's own profile: the object the viewer read, warm already
        with statements(shutter) as sql:
            own, warm_path = get_profile(shutter, owner, user)
        assert warm_path and sql == [] and own.json == theirs
    data = theirs["data"]
    assert data["id"] == owner.id and data["username"] == "owner"
    assert data["bio"] == "hello" and data["website"] == "https://example.com" and data["is_private"] is False
    assert data["counts"] == {"media": 1, "follows": 0, "followed_by": 1}


def _edit(shutter, owner, _others):
    assert shutter.post("/v1/users/self", owner, full_name="New Name", bio="new bio").status_code == 200
    return {"full_name": "New Name", "bio": "new bio"}


def _private(shutter, owner, _others):
    assert shutter.post("/v1/users/self", owner, is_private="true").status_code == 200
    return {"is_private": True}


CHANGES = {"edit": _edit, "private": _private}


@pytest.mark.parametrize("change", CHANGES)
def test_a_profile_edit_shows_in_the_next_read(shutter, change):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    follow(shutter, viewer, owner)  # still sees the profile once private
    before = warm_profile(shutter, viewer, owner.id)
    warm_profile(shutter, owner)
    expected = CHANGES[change](shutter, owner, [viewer])
    for account, user in ((viewer, owner.id), (owner, "self")):
        after = warm_profile(shutter, account, user)
        assert after == {**before, **expected}


def test_follows_unfollows_and_approvals_move_both_users_counts_at_once(shutter):
    owner, fan = shutter.account("owner", private=True), shutter.account("fan")
    zero = {"media": 0, "follows": 0, "followed_by": 0}
    assert counts(shutter, fan, owner.id) == zero and counts(shutter, fan) == zero
    assert shutter.relate(fan, owner, "follow").status_code == 200  # a request: nothing counted
    assert counts(shutter, fan, owner.id) == zero and counts(shutter, fan) == zero
    assert shutter.relate(owner, fan, "approve").status_code == 200
    assert counts(shutter, fan, owner.id) == {**zero, "followed_by": 1}
    assert counts(shutter, owner) == {**zero, "followed_by": 1}
    assert counts(shutter, fan) == {**zero, "follows": 1}
    assert shutter.relate(fan, owner, "unfollow").status_code == 200
    assert counts(shutter, fan, owner.id) == zero and counts(shutter, fan) == zero and counts(shutter, owner) == zero


def test_an_account_made_public_counts_the_requests_it_approves(shutter):
    owner, fans = shutter.account("owner", private=True), [shutter.account(f"fan{i}") for i in range(2)]
    for fan in fans:
        assert shutter.relate(fan, owner, "follow").status_code == 200
        assert counts(shutter, fan)["follows"] == 0
    assert counts(shutter, owner)["followed_by"] == 0
    assert shutter.post("/v1/users/self", owner, is_private="false").status_code == 200
    assert counts(shutter, owner)["followed_by"] == 2
    assert all(counts(shutter, fan)["follows"] == 1 for fan in fans)


def test_photos_published_and_deleted_move_the_media_count(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    assert counts(shutter, viewer, owner.id)["media"] == 0 and counts(shutter, owner)["media"] == 0
    photo = post_photo(shutter, owner)
    assert counts(shutter, viewer, owner.id)["media"] == 1 and counts(shutter, owner)["media"] == 1
    assert shutter.delete(f"/v1/media/{photo}", owner).status_code == 200
    assert counts(shutter, viewer, owner.id)["media"] == 0 and counts(shutter, owner)["media"] == 0


def test_a_block_hides_the_blocker_at_once_and_ends_the_follows_counted(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    follow(shutter, viewer, owner)
    follow(shutter, owner, viewer)
    assert counts(shutter, viewer, owner.id) == {"media": 0, "follows": 1, "followed_by": 1}
    assert counts(shutter, viewer) == {"media": 0, "follows": 1, "followed_by": 1}
    assert shutter.relate(owner, viewer, "block").status_code == 200
    for _ in range(2):  # the warm path never answers it: the long way's 404
        assert_error(shutter.get(f"/v1/users/{owner.id}", viewer), 404, "APINotFoundError")
    assert counts(shutter, viewer) == {"media": 0, "follows": 0, "followed_by": 0}
    # The blocker still sees whom they blocked (as the long way shows them).
    assert counts(shutter, owner, viewer.id) == {"media": 0, "follows": 0, "followed_by": 0}
    assert shutter.relate(owner, viewer, "unblock").status_code == 200
    assert counts(shutter, viewer, owner.id) == {"media": 0, "follows": 0, "followed_by": 0}


def test_whom_the_viewer_blocked_still_shows_warm(shutter):
    owner, viewer = shutter.account("owner"), shutter.account("viewer")
    warm_profile(shutter, viewer, owner.id)
    assert shutter.relate(viewer, owner, "block").status_code == 200
    assert warm_profile(shutter, viewer, owner.id)["id"] == owner.id


def test_a_reader_that_missed_before_a_change_cannot_store_the_old_profile(shutter):
    owner = shutter.account("owner")
    warm_profile(shutter, owner)
    services = services_of(shutter)
    token_key, base = services.tokens.key(owner.token), "http://localhost"
    assert isinstance(services.profiles.user(token_key, "self", base), Rendered)
    redis = services.redis
    # A read that missed, and loaded the row, before an edit committed...
    redis.delete(rendered_profile_key(int(owner.id)))
    miss = services.profiles.user(token_key, "self", base)
    assert isinstance(miss, Miss)
    with services.db.session() as session:
        old = session.get(User, int(owner.id))
        session.expunge(old)
    assert shutter.post("/v1/users/self", owner, bio="after").status_code == 200
    # ...stores nothing over the edit's tombstone, and the next read shows the edit.
    with services.db.session() as session:
        services.profiles.user_full(session, int(owner.id), miss, old, base)
    assert redis.get(rendered_profile_key(int(owner.id))).startswith("~")
    assert warm_profile(shutter, owner)["bio"] == "after"


def test_bad_ids_and_tokens_answer_as_the_long_way(shutter):
    owner = shutter.account("owner")
    warm_profile(shutter, owner)
    assert_error(shutter.get("/v1/users/self"), 400, "OAuthParameterException")
    assert_error(shutter.get(f"/v1/users/{owner.id}"), 400, "OAuthParameterException")
    assert shutter.get("/v1/users/self", access_token="nope").status_code in (400, 401, 403)
    assert_error(shutter.get("/v1/users/abc", owner), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/99999999999999999999", owner), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/1234567890123456789", owner), 404, "APINotFoundError")
    # Another spelling of the same id is the same user, the long way.
    assert shutter.get(f"/v1/users/{owner.id}_x", owner).json["data"]["id"] == owner.id


# -- GET /users/{id}/relationship ------------------------------------------------------

def get_relationship(shutter, viewer, target):
    """The relationship read's response, and whether the warm path answered it."""
    before = warm_reads("relationship")
    response = shutter.get(f"/v1/users/{target.id}/relationship", viewer)
    return response, warm_reads("relationship") == before + 1


def truth(shutter, viewer, target) -> dict | None:
    """What the database says (app.social.relationships.relationship); None when the
    target blocked the viewer (the route's 404)."""
    services = services_of(shutter)
    with services.db.session() as session:
        if is_blocked(session, int(target.id), int(viewer.id)):
            return None
        return relationship(session, int(viewer.id), session.get(User, int(target.id)))


def assert_relationship(shutter, viewer, target) -> None:
    """Read twice: each answer is the database's, and the second is warm with no
    SQL (a 404 never is: the long way says it)."""
    expected = truth(shutter, viewer, target)
    for attempt in range(2):
        with statements(shutter) as sql:
            response, warm_path = get_relationship(shutter, viewer, target)
        if expected is None:
            assert_error(response, 404, "APINotFoundError")
            assert not warm_path
            continue
        assert response.status_code == 200 and response.json["data"] == expected, (attempt, response.json)
        if attempt == 1:
            assert warm_path and sql == []


def test_a_warm_relationship_read_runs_no_sql_and_equals_the_long_way(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, alice, bob)
    cold, warm_path = get_relationship(shutter, alice, bob)
    assert not warm_path
    with statements(shutter) as sql:
        warm, warm_path = get_relationship(shutter, alice, bob)
    assert warm_path and sql == []
    assert warm.json == cold.json == {"meta": {"code": 200}, "data": {
        "outgoing_status": "follows", "incoming_status": "none", "target_user_is_private": False}}


STEPS = [  # (who, action, whom): a follow, a request and its answers, privacy both ways, blocks both ways
    ("a", "follow", "b"), ("b", "follow", "a"), ("a", "unfollow", "b"), ("b", "private", None),
    ("a", "follow", "b"), ("b", "approve", "a"), ("a", "unfollow", "b"), ("a", "follow", "b"),
    ("b", "ignore", "a"), ("a", "follow", "b"), ("b", "block", "a"), ("b", "unblock", "a"),
    ("b", "public", None), ("a", "follow", "b"), ("a", "block", "b"), ("b", "follow", "a"),
    ("a", "unblock", "b"), ("b", "follow", "a"), ("a", "private", None), ("b", "block", "a"),
]


def test_the_warm_relationship_follows_every_change_at_once(shutter):
    users = {"a": shutter.account("a"), "b": shutter.account("b")}
    a, b = users["a"], users["b"]
    assert_relationship(shutter, a, b)
    assert_relationship(shutter, b, a)
    for who, action, whom in STEPS:
        if action in ("private", "public"):
            response = shutter.post("/v1/users/self", users[who], is_private=str(action == "private").lower())
        else:
            response = shutter.relate(users[who], users[whom], action)
        assert response.status_code in (200, 400), response.json  # a blocked follow is refused
        assert_relationship(shutter, a, b)
        assert_relationship(shutter, b, a)


def test_relationship_errors_answer_as_the_long_way(shutter):
    alice = shutter.account("alice")
    assert_error(shutter.get(f"/v1/users/{alice.id}/relationship"), 400, "OAuthParameterException")
    for _ in range(2):
        assert_error(shutter.get(f"/v1/users/{alice.id}/relationship", alice), 400, "APIInvalidParametersError")
        assert_error(shutter.get("/v1/users/self/relationship", alice), 400, "APIInvalidParametersError")
        assert_error(shutter.get("/v1/users/1234567890123456789/relationship", alice), 404, "APINotFoundError")
        assert_error(shutter.get("/v1/users/x1/relationship", alice), 400, "APIInvalidParametersError")


# -- GET /users/self/activity ------------------------------------------------------------

def get_activity(shutter, account, **params):
    """The activity read's response, and whether the warm path answered it."""
    before = warm_reads("activity")
    response = shutter.get("/v1/users/self/activity", account, **params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response, warm_reads("activity") == before + 1


def long_way_activity(shutter, account, **params) -> dict:
    """What the long way answers now: with the copy in Redis gone, it reads the table."""
    services_of(shutter).redis.delete(activity_key(int(account.id)))
    response, warm_path = get_activity(shutter, account, **params)
    assert not warm_path
    return response.json


def assert_activity(shutter, account, **params) -> list[dict]:
    """The long way's answer, then the same warm, with no SQL."""
    expected = long_way_activity(shutter, account, **params)
    with statements(shutter) as sql:
        response, warm_path = get_activity(shutter, account, **params)
    assert warm_path and sql == [], sql
    assert response.json == expected
    return expected["data"]


def test_a_warm_activity_read_runs_no_sql_and_equals_the_long_way(shutter):
    alice, bob, carol = (shutter.account(n) for n in ("alice", "bob", "carol"))
    photo = post_photo(shutter, alice, caption="hi @carol")
    follow(shutter, bob, alice)
    assert shutter.post(f"/v1/media/{photo}/likes", bob).status_code == 200
    assert shutter.post(f"/v1/media/{photo}/comments", bob, text="nice @carol").status_code == 200
    assert shutter.post(f"/v1/media/{photo}/likes", alice).status_code == 200
    data = assert_activity(shutter, alice)
    assert [(a["type"], a["from"]["username"]) for a in data] == [("comment", "bob"), ("like", "bob"), ("follow", "bob")]
    assert data[0]["comment"]["text"] == "nice @carol" and data[0]["media"]["user_has_liked"] is True
    assert data[0]["media"]["likes"]["count"] == 2
    assert [a["type"] for a in assert_activity(shutter, carol)] == ["mention", "mention"]
    # Pages: the cursor and the page after it, warm too.
    first = shutter.get("/v1/users/self/activity", alice, count=2).json
    cursor = first["pagination"]["next_max_id"]
    assert [a["id"] for a in first["data"]] == [a["id"] for a in data[:2]]
    assert assert_activity(shutter, alice, count=2) == first["data"]
    assert [a["id"] for a in assert_activity(shutter, alice, count=2, max_id=cursor)] == [data[2]["id"]]


def test_the_warm_activity_read_marks_it_seen_as_the_long_way(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, bob, alice)
    redis = services_of(shutter).redis
    newest = assert_activity(shutter, alice)[0]["id"]
    redis.delete(activity_seen_key(int(alice.id)))
    assert get_activity(shutter, alice)[1]  # warm
    assert redis.get(activity_seen_key(int(alice.id))) == newest
    follow(shutter, shutter.account("carol"), alice)
    newer, _ = get_activity(shutter, alice, max_id=newest)  # an older page marks nothing
    assert redis.get(activity_seen_key(int(alice.id))) == newest
    latest = get_activity(shutter, alice)[0].json["data"][0]["id"]
    assert redis.get(activity_seen_key(int(alice.id))) == latest != newest


def test_warm_activity_is_never_stale(shutter):
    """After each change: a like, a comment, an unlike, a comment deleted, a photo
    deleted, a block either way, privacy, a follow ended, a name changed."""
    alice, bob, carol = (shutter.account(n) for n in ("alice", "bob", "carol"))
    photo = post_photo(shutter, alice)
    mine = post_photo(shutter, carol, caption="for @alice")  # a mention of alice on carol's photo
    follow(shutter, bob, alice)
    follow(shutter, carol, alice)
    follow(shutter, alice, carol)
    assert_activity(shutter, alice)
    steps = [
        lambda: shutter.post(f"/v1/media/{photo}/likes", bob),
        lambda: shutter.post(f"/v1/media/{photo}/comments", carol, text="c1"),
        lambda: shutter.post(f"/v1/media/{photo}/likes", carol),
        lambda: shutter.post("/v1/users/self", bob, full_name="Bob Renamed"),
        lambda: shutter.relate(alice, bob, "block"),  # bob's like is hidden
        lambda: shutter.relate(alice, bob, "unblock"),
        lambda: shutter.relate(bob, alice, "follow"),
        lambda: shutter.relate(bob, alice, "block"),
        lambda: shutter.relate(bob, alice, "unblock"),
        lambda: shutter.delete(f"/v1/media/{photo}/likes", bob),
        lambda: shutter.post("/v1/users/self", carol, is_private="true"),
        lambda: shutter.relate(alice, carol, "unfollow"),  # carol's photo: no longer seen
        lambda: shutter.relate(alice, carol, "follow"),  # a request
        lambda: shutter.relate(carol, alice, "approve"),
        lambda: shutter.delete(f"/v1/media/{mine}", carol),
        lambda: shutter.delete(f"/v1/media/{photo}", alice),
    ]
    comments = shutter.get(f"/v1/media/{photo}/comments", alice)
    for i, step in enumerate(steps):
        response = step()
        assert response.status_code == 200, (i, response.json)
        after = shutter.get("/v1/users/self/activity", alice).json  # the first read after the change
        assert after == long_way_activity(shutter, alice), i
        assert assert_activity(shutter, alice) == after["data"], i
    assert comments.status_code == 200


def test_a_deleted_comment_leaves_the_warm_activity(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    photo = post_photo(shutter, alice)
    comment = shutter.post(f"/v1/media/{photo}/comments", bob, text="oops").json["data"]["id"]
    assert [a["type"] for a in assert_activity(shutter, alice)] == ["comment"]
    assert shutter.delete(f"/v1/media/{photo}/comments/{comment}", bob).status_code == 200
    assert shutter.get("/v1/users/self/activity", alice).json["data"] == []
    assert assert_activity(shutter, alice) == []
