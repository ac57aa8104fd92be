"""The official python-instagram 1.3.2 client, unpatched, against a live Shutter (issue 13).

Every call goes through the client's own code over real HTTP (httplib2, then
werkzeug's server, then the app): its `.json` paths, its token exchange with
no Content-Type, its two `sig`s, its strict models, its pagination. Set-up
(sign-up, client registration, making photos ready) goes through the Flask
test client and the pipeline in-process, as the feed tests do.

Not here: media_search, location_search, geography_recent_media and the
subscriptions (the search and real-time tests drive those).
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from instagram import InstagramAPIError
from instagram.models import Comment, Image, Location, Media, Relationship, Tag, User
from instagram.oauth2 import OAuth2AuthExchangeError, OAuth2Request

from app.engagement import popular
from tests.instagram_client import http_get, instagram_api, xauth_token
from tests.support import PASSWORD, basic_auth
from tests.test_feeds import post_photo, services_of


@pytest.fixture
def settings(settings):
    # Each test signs up and logs in more than the production limits allow one address.
    return dataclasses.replace(settings, signup_rate_limit="1000/minute", login_rate_limit="1000/minute")


@pytest.fixture
def people(shutter):
    return tuple(shutter.account(name) for name in ("alice", "bob", "carol"))


def api_as(live_server, account, **credentials):
    return instagram_api(live_server, access_token=account.token, **credentials)


# --- what the client's models must find ---------------------------------------


def assert_user(user, account=None, *, full: bool = False) -> None:
    assert isinstance(user, User)
    assert isinstance(user.id, str) and user.username and isinstance(user.full_name, str)
    assert isinstance(user.profile_picture, str)
    if account is not None:
        assert (user.id, user.username) == (account.id, account.username)
    if full:
        assert set(user.counts) == {"media", "follows", "followed_by"}
        assert hasattr(user, "bio") and hasattr(user, "website")


def assert_comment(comment, author=None, text: str | None = None) -> None:
    assert isinstance(comment, Comment)
    assert comment.id and isinstance(comment.created_at, datetime)
    assert_user(comment.user, author)
    if text is not None:
        assert comment.text == text


def assert_media(media, owner=None, live_server=None) -> None:
    assert isinstance(media, Media)
    assert media.type == "image" and "_" in media.id
    assert_user(media.user, owner)
    assert {"thumbnail", "low_resolution", "standard_resolution"} <= set(media.images)
    for image in media.images.values():
        assert isinstance(image, Image) and image.width > 0 and image.height > 0
        if live_server is not None:
            assert image.url.startswith(live_server.url + "/media/")
    assert media.get_standard_resolution_url() and media.get_low_resolution_url() and media.get_thumbnail_url()
    assert isinstance(media.like_count, int) and isinstance(media.comment_count, int)
    assert all(isinstance(user, User) for user in media.likes)
    assert all(isinstance(comment, Comment) for comment in media.comments)
    assert isinstance(media.created_time, datetime)
    assert media.link.startswith("http") and isinstance(media.filter, str)
    assert isinstance(media.user_has_liked, bool)
    assert all(isinstance(tag, Tag) for tag in media.tags)
    if media.caption is not None:
        assert_comment(media.caption, owner)


def media_ids(media_list) -> list[int]:
    return [int(media.id.split("_")[0]) for media in media_list]


# --- logging in ----------------------------------------------------------------


def test_xauth_login_through_the_client(shutter, live_server):
    assert shutter.signup("alice").status_code == 201
    client = shutter.app_client()
    api = instagram_api(live_server, client_id=client["client_id"], client_secret=client["client_secret"],
                        redirect_uri=client["redirect_uri"])
    # The client posts a urlencoded body with no Content-Type, scopes joined by spaces.
    token, user = api.exchange_xauth_login_for_access_token("alice", PASSWORD, scope=["basic", "likes"])
    assert user["username"] == "alice" and set(user) >= {"id", "username", "full_name", "profile_picture"}
    me = instagram_api(live_server, access_token=token).user()
    assert_user(me, full=True)
    assert (me.id, me.username) == (user["id"], "alice")

    # No redirect_uri: the client sends the text "None", which the password grant ignores.
    unset = instagram_api(live_server, client_id=client["client_id"], client_secret=client["client_secret"])
    assert unset.exchange_xauth_login_for_access_token("alice", PASSWORD)[1]["username"] == "alice"

    # Errors reach the client's exception with their message (it reads the top-level error_message).
    with pytest.raises(OAuth2AuthExchangeError, match="username or password you entered is incorrect"):
        api.exchange_xauth_login_for_access_token("alice", "not the password")
    no_secret = instagram_api(live_server, client_id=client["client_id"])  # sends client_secret=None
    with pytest.raises(OAuth2AuthExchangeError, match="Invalid client_id or client_secret"):
        no_secret.exchange_xauth_login_for_access_token("alice", PASSWORD)
    with pytest.raises(OAuth2AuthExchangeError, match="Invalid scope"):
        api.exchange_xauth_login_for_access_token("alice", PASSWORD, scope=["basic", "everything"])


def test_xauth_scopes_are_the_ones_asked_for(shutter, live_server, people):
    alice, bob, _ = people
    photo = post_photo(shutter, bob)
    client = shutter.app_client()
    likes_only = instagram_api(live_server, access_token=xauth_token(live_server, client, "alice", scope="basic likes"))
    media_id = f"{photo}_{bob.id}"
    assert likes_only.like_media(media_id=media_id) == []
    with pytest.raises(InstagramAPIError) as refused:
        likes_only.create_media_comment(media_id=media_id, text="hi")
    assert (refused.value.status_code, refused.value.error_type) == (400, "OAuthPermissionsException")


def test_authorization_code_login_through_the_client(shutter, live_server):
    assert shutter.signup("alice").status_code == 201
    client = shutter.app_client()
    api = instagram_api(live_server, client_id=client["client_id"], client_secret=client["client_secret"],
                        redirect_uri=client["redirect_uri"])
    url = api.get_authorize_url(scope=["basic", "comments"])
    # Shutter's authorize step: the user answers with HTTP Basic and is sent straight back.
    response, _ = http_get(url, basic_auth("alice", PASSWORD))
    assert response.status == 302, response
    location = urlsplit(response["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == client["redirect_uri"]
    code = parse_qs(location.query)["code"][0]

    token, user = api.exchange_code_for_access_token(code)
    assert user["username"] == "alice"
    assert instagram_api(live_server, access_token=token).user("self").username == "alice"
    with pytest.raises(OAuth2AuthExchangeError, match="already used"):
        api.exchange_code_for_access_token(code)  # single-use
    # The client's user-id exchange (grant_type=authorization_code, no code) is refused cleanly.
    with pytest.raises(OAuth2AuthExchangeError, match="needs code and redirect_uri"):
        api.exchange_user_id_for_access_token(user["id"])
    # A code exchange without a redirect_uri (sent as "None") is refused with the same message.
    unset = instagram_api(live_server, client_id=client["client_id"], client_secret=client["client_secret"])
    with pytest.raises(OAuth2AuthExchangeError, match="needs code and redirect_uri"):
        unset.exchange_code_for_access_token("some-code")


# --- users and relationships --------------------------------------------------------


def test_users_through_the_client(shutter, live_server, people):
    alice, bob, carol = people
    api = api_as(live_server, alice)
    assert_user(api.user(), alice, full=True)  # /v1/users/self.json
    assert_user(api.user(bob.id), bob, full=True)
    found = api.user_search(q="bo")
    assert [user.username for user in found] == ["bob"]
    assert_user(found[0], bob)
    assert [user.username for user in api.user_search("c", 5)] == ["carol"]  # positional: q, count

    # alice follows bob and carol; bob follows alice
    for target in (bob, carol):
        relationship, _next = api.follow_user(user_id=target.id)
        assert isinstance(relationship, Relationship) and relationship.outgoing_status == "follows"
    api_as(live_server, bob).follow_user(user_id=alice.id)
    follows, next_url = api.user_follows()
    assert {user.username for user in follows} == {"bob", "carol"} and next_url is None
    assert all(isinstance(user, User) for user in follows)
    followers, _ = api.user_followed_by(alice.id)
    assert [user.username for user in followers] == ["bob"]
    assert_user(followers[0], bob)

    relationship = api.user_relationship(user_id=bob.id)
    assert isinstance(relationship, Relationship)
    assert (relationship.outgoing_status, relationship.incoming_status,
            relationship.target_user_is_private) == ("follows", "followed_by", False)


def test_a_follow_list_pages_through_the_clients_generator(shutter, live_server, people):
    alice, *_ = people
    fans = [shutter.account(f"fan{i}") for i in range(5)]
    for fan in fans:
        assert shutter.relate(fan, alice, "follow").status_code == 200
    api = api_as(live_server, alice)
    pages = [[user.username for user in users] for users, _next in
             api.user_followed_by(count=2, as_generator=True, max_pages=None)]
    assert pages == [["fan4", "fan3"], ["fan2", "fan1"], ["fan0"]]


def test_all_six_relationship_actions_through_the_client(shutter, live_server, people):
    alice, bob, carol = people
    assert shutter.post("/v1/users/self", carol, is_private="true").status_code == 200
    api = api_as(live_server, alice)

    def state(relationship):
        assert isinstance(relationship, Relationship)
        return relationship.outgoing_status, relationship.incoming_status, relationship.target_user_is_private

    assert state(api.follow_user(user_id=carol.id)[0]) == ("requested", "none", True)
    assert [user.username for user in api_as(live_server, carol).user_incoming_requests()] == ["alice"]
    carol_api = api_as(live_server, carol)
    assert state(carol_api.approve_user_request(user_id=alice.id)[0]) == ("none", "followed_by", False)
    assert state(api.user_relationship(user_id=carol.id)) == ("follows", "none", True)
    assert state(api.unfollow_user(user_id=carol.id)[0]) == ("none", "none", True)

    api.follow_user(user_id=carol.id)
    assert state(carol_api.ignore_user_request(user_id=alice.id)[0]) == ("none", "none", False)
    assert carol_api.user_incoming_requests() == []

    assert state(api.block_user(user_id=bob.id)[0]) == ("none", "blocked_by_you", False)
    with pytest.raises(InstagramAPIError) as refused:
        api_as(live_server, bob).follow_user(user_id=alice.id)
    assert (refused.value.status_code, refused.value.error_type) == (400, "APINotAllowedError")
    assert state(api.unblock_user(user_id=bob.id)[0]) == ("none", "none", False)


# --- media ------------------------------------------------------------------


def test_media_by_id_shortcode_and_lists_through_the_client(shutter, live_server, people):
    alice, bob, _ = people
    first = post_photo(shutter, bob, caption="first #sunset")
    second = post_photo(shutter, bob, caption="second", lat="48.8584", lng="2.2945", location_name="Eiffel Tower")
    api = api_as(live_server, alice)

    media = api.media(f"{second}_{bob.id}")  # /v1/media/<id>_<owner>.json
    assert_media(media, bob, live_server)
    assert media.caption.text == "second" and media.tags == []
    assert isinstance(media.location, Location) and media.location.name == "Eiffel Tower"
    assert (media.location.point.latitude, media.location.point.longitude) == (48.8584, 2.2945)
    by_code = api.media_shortcode(media.link.rstrip("/").rsplit("/", 1)[1])  # /v1/media/shortcode/<code>, no .json
    assert isinstance(by_code, Media) and by_code.id == media.id

    recent, next_url = api.user_recent_media(user_id=bob.id)
    assert media_ids(recent) == [second, first] and next_url is None
    for item in recent:
        assert_media(item, bob, live_server)
    assert media_ids(api_as(live_server, bob).user_recent_media()[0]) == [second, first]  # user_id=self

    location = api.location(media.location.id)
    assert isinstance(location, Location) and location.id == media.location.id
    assert location.name == "Eiffel Tower" and location.point.latitude == 48.8584
    at_location, _ = api.location_recent_media(location_id=media.location.id)
    assert media_ids(at_location) == [second]

    tag = api.tag("sunset")
    assert isinstance(tag, Tag) and (tag.name, tag.media_count) == ("sunset", 1)
    tagged, _ = api.tag_recent_media(tag_name="sunset")
    assert media_ids(tagged) == [first]
    assert [t.name for t in tagged[0].tags] == ["sunset"]
    found, _ = api.tag_search(q="sun")
    assert [(t.name, t.media_count) for t in found] == [("sunset", 1)]

    with pytest.raises(InstagramAPIError) as missing:
        api.media(f"{second + 1}_{bob.id}")
    assert (missing.value.status_code, missing.value.error_type) == (404, "APINotFoundError")


def test_likes_and_comments_through_the_client(shutter, live_server, people):
    alice, bob, carol = people
    photo = post_photo(shutter, bob)
    media_id = f"{photo}_{bob.id}"
    api = api_as(live_server, alice)

    assert api.like_media(media_id=media_id) == []
    assert api_as(live_server, carol).like_media(media_id) == []
    likers = api.media_likes(media_id=media_id)
    assert [user.username for user in likers] == ["carol", "alice"]
    assert_user(likers[1], alice)
    liked, next_url = api.user_liked_media()
    assert media_ids(liked) == [photo] and next_url is None
    assert liked[0].user_has_liked is True and liked[0].like_count == 2
    assert api.unlike_media(media_id=media_id) == []
    assert api.user_liked_media()[0] == []

    text = "héllo wörld & co #loop"
    assert api.create_media_comment(media_id=media_id, text=text) == []
    assert api_as(live_server, carol).create_media_comment(media_id, "second") == []
    comments = api.media_comments(media_id=media_id)
    assert [c.text for c in comments] == [text, "second"]
    assert_comment(comments[0], alice, text)
    media = api.media(media_id)
    assert media.comment_count == 2 and [c.text for c in media.comments] == [text, "second"]
    assert api.delete_comment(media_id=media_id, comment_id=comments[0].id) == []
    assert [c.text for c in api.media_comments(media_id)] == ["second"]


def test_popular_through_the_client(shutter, live_server, people):
    alice, bob, carol = people
    quiet, liked = post_photo(shutter, bob), post_photo(shutter, carol)
    for who, photo, owner in ((bob, liked, carol), (alice, liked, carol), (carol, quiet, bob)):
        assert shutter.post(f"/v1/media/{photo}_{owner.id}/likes", who).status_code == 200
    services = services_of(shutter)
    with services.db.session() as session:
        assert popular.compute(session, services.redis) == 2
    ranked = api_as(live_server, alice).media_popular(count=5)
    assert media_ids(ranked) == [liked, quiet]
    for media in ranked:
        assert_media(media, live_server=live_server)


def test_the_feed_pages_through_the_clients_own_pagination(shutter, live_server, people):
    alice, bob, _ = people
    assert shutter.relate(alice, bob, "follow").status_code == 200
    posted = sorted((post_photo(shutter, who) for who in (bob, alice, bob, bob, alice)), reverse=True)
    api = api_as(live_server, alice)

    for _ in range(2):  # assembled, then the warm read
        page, next_url = api.user_media_feed(count=2)
        assert media_ids(page) == posted[:2]
        assert next_url.startswith(f"{live_server.url}/v1/users/self/feed.json?")  # absolute, fetched as it is
        assert f"access_token={alice.token}" in next_url
        page, next_url = api.user_media_feed(with_next_url=next_url)
        assert media_ids(page) == posted[2:4]
        page, next_url = api.user_media_feed(with_next_url=next_url)
        assert media_ids(page) == posted[4:] and next_url is None

    generated = [media_ids(page) for page, _next in api.user_media_feed(count=2, as_generator=True, max_pages=None)]
    assert generated == [posted[:2], posted[2:4], posted[4:]]
    assert len(list(api.user_media_feed(count=1, as_generator=True))) == 3  # the client's default max_pages
    assert len(list(api.user_media_feed(count=1, as_generator=True, max_pages=2))) == 2
    for page, _next in api.user_media_feed(count=5, as_generator=True):
        for media in page:
            assert_media(media, live_server=live_server)


def test_other_lists_page_through_the_client(shutter, live_server, people):
    alice, bob, _ = people
    photos = [post_photo(shutter, bob, caption="#loop") for _ in range(3)]
    for photo in photos:
        assert shutter.post(f"/v1/media/{photo}_{bob.id}/likes", alice).status_code == 200
    api = api_as(live_server, alice)
    newest_first = photos[::-1]
    cases = {
        "user_recent_media": lambda **kw: api.user_recent_media(user_id=bob.id, **kw),
        "user_liked_media": api.user_liked_media,
        "tag_recent_media": lambda **kw: api.tag_recent_media(tag_name="loop", **kw),
    }
    for name, call in cases.items():
        pages = [media_ids(page) for page, _next in call(count=2, as_generator=True, max_pages=None)]
        assert pages == [newest_first[:2], newest_first[2:]], name


# --- signed requests ---------------------------------------------------------------


@pytest.fixture
def enforcing(shutter, live_server, people):
    """alice's token from a client registered with enforce_signed_requests, and that client."""
    alice, *_ = people
    client = shutter.register_client("alice", enforce_signed_requests="true").json["data"]
    return xauth_token(live_server, client, "alice"), client


def test_the_clients_signed_requests_are_accepted(shutter, live_server, people):
    """A client given its secret signs every call (two sigs on GET/DELETE, one on POST):
    each form is accepted, on a client that does not enforce signing too."""
    alice, bob, _ = people
    client = shutter.app_client()
    photo = post_photo(shutter, bob, caption="#signed")
    media_id = f"{photo}_{bob.id}"
    api = api_as(live_server, alice, client_secret=client["client_secret"])
    assert api.user().username == "alice"  # no params: both sigs the same
    assert [user.username for user in api.user_search(q="bob", count=2)] == ["bob"]  # params in S2 only
    assert api.follow_user(user_id=bob.id)[0].outgoing_status == "follows"  # POST: the body is not signed
    assert api.create_media_comment(media_id=media_id, text="signed, not its text") == []
    assert api.like_media(media_id=media_id) == []
    assert api.unlike_media(media_id=media_id) == []
    assert media_ids(api.tag_recent_media(tag_name="signed")[0]) == [photo]
    # A wrong secret is refused even when the client does not enforce signing.
    wrong = api_as(live_server, alice, client_secret="not the secret")
    with pytest.raises(InstagramAPIError) as refused:
        wrong.user()
    assert (refused.value.status_code, refused.value.error_type) == (403, "OAuthForbiddenException")


def test_an_enforcing_client_needs_the_clients_signature(shutter, live_server, people, enforcing):
    alice, bob, carol = people
    token, client = enforcing
    assert shutter.relate(alice, bob, "follow").status_code == 200
    photos = [post_photo(shutter, bob, caption="#enforced") for _ in range(3)]
    media_id = f"{photos[0]}_{bob.id}"
    signed = instagram_api(live_server, access_token=token, client_secret=client["client_secret"])
    assert signed.user().username == "alice"
    assert signed.follow_user(user_id=carol.id)[0].outgoing_status == "follows"
    assert signed.create_media_comment(media_id=media_id, text="x") == []
    assert [c.text for c in signed.media_comments(media_id)] == ["x"]
    assert signed.like_media(media_id=media_id) == [] and signed.unlike_media(media_id=media_id) == []
    # next_url carries a sig of its own: the client fetches it as it is.
    pages = [media_ids(page) for page, _next in signed.user_media_feed(count=2, as_generator=True, max_pages=None)]
    assert pages == [photos[::-1][:2], photos[::-1][2:]]
    pages = [media_ids(page) for page, _next in
             signed.tag_recent_media(tag_name="enforced", count=2, as_generator=True, max_pages=None)]
    assert pages == [photos[::-1][:2], photos[::-1][2:]]

    unsigned = instagram_api(live_server, access_token=token)  # no secret: no sig at all
    wrong = instagram_api(live_server, access_token=token, client_secret="not the secret")
    calls = {
        "GET": lambda api: api.user(),
        "GET with params": lambda api: api.user_search(q="bob"),
        "POST": lambda api: api.unfollow_user(user_id=carol.id),
        "DELETE": lambda api: api.unlike_media(media_id=media_id),
    }
    for api in (unsigned, wrong):
        for what, call in calls.items():
            with pytest.raises(InstagramAPIError) as refused:
                call(api)
            assert (refused.value.status_code, refused.value.error_type) == (403, "OAuthForbiddenException"), what
            assert "sig" in refused.value.error_message
    # Another token's sig, on the same endpoint, is no sig for this one.
    other = instagram_api(live_server, access_token=xauth_token(live_server, client, "alice"),
                          client_secret=client["client_secret"])
    url = OAuth2Request(other)._full_url("/users/self.json")  # the client's own URL, with its S1
    response, _ = http_get(url.replace(f"access_token={other.access_token}", f"access_token={token}"))
    assert response.status == 403


def test_a_percent_encoded_path_is_signed_as_the_client_sends_it(shutter, live_server, people, enforcing):
    _, bob, _ = people
    token, client = enforcing
    photo = post_photo(shutter, bob, caption="#café")
    signed = instagram_api(live_server, access_token=token, client_secret=client["client_secret"])
    # /v1/tags/caf%C3%A9/media/recent.json, signed percent-encoded; Flask sees it decoded
    assert media_ids(signed.tag_recent_media(tag_name="café")[0]) == [photo]
    assert signed.tag(tag_name="café").media_count == 1
