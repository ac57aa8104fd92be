"""Requests as v1 took them (issue 13, part 2): `.json` paths, bodies with no
Content-Type or in JSON, OAuth errors at the top level, the signature forms
the official client sends, and next_url that carries the caller's auth.

Through Flask's test client; tests/test_official_client.py drives the same
through the real client over HTTP.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.support import PASSWORD, assert_error
from tests.test_accounts import sign
from tests.test_feeds import post_photo


@pytest.fixture
def alice(shutter):
    return shutter.account("alice")


@pytest.fixture
def bob(shutter):
    return shutter.account("bob")


# --- the .json suffix --------------------------------------------------------------------


def test_a_json_suffix_names_the_same_resource(shutter, alice, bob, subtests):
    photo = post_photo(shutter, bob, caption="#cat")
    media_id = f"{photo}_{bob.id}"
    shortcode = shutter.get(f"/v1/media/{media_id}", alice).json["data"]["shortcode"]
    assert shutter.post(f"/v1/media/{media_id}/likes.json", alice).status_code == 200
    paths = ["/v1/users/self", f"/v1/users/{bob.id}", f"/v1/users/{bob.id}/relationship", f"/v1/media/{media_id}",
             f"/v1/media/{media_id}/likes", "/v1/tags/cat", "/v1/tags/cat/media/recent",
             f"/v1/media/shortcode/{shortcode}", "/v1/users/self/media/liked", "/v1/users/self/feed"]
    for path in paths:
        with subtests.test(path=path):
            plain = shutter.get(path, alice)
            suffixed = shutter.get(path + ".json", alice)
            assert plain.status_code == suffixed.status_code == 200, suffixed.json
            assert suffixed.json == plain.json


def test_the_suffix_works_for_every_method(shutter, alice, bob):
    photo = post_photo(shutter, bob)
    media_id = f"{photo}_{bob.id}"
    comment = shutter.post(f"/v1/media/{media_id}/comments.json", alice, text="hi")
    assert comment.status_code == 200, comment.json
    assert shutter.delete(f"/v1/media/{media_id}/comments/{comment.json['data']['id']}.json", alice).status_code == 200
    assert shutter.post(f"/v1/users/{bob.id}/relationship.json", alice, action="follow").json["data"][
        "outgoing_status"] == "follows"
    assert shutter.delete(f"/v1/media/{media_id}/likes.json", alice).status_code == 200


def test_any_other_suffix_is_a_404_envelope(shutter, alice, subtests):
    for path in ["/v1/users/self.xml", f"/v1/users/{alice.id}.atom", "/v1/media/popular.JSON",
                 "/v1/tags/cat.dog", "/v1/users/self/feed.json.xml"]:
        with subtests.test(path=path):
            meta = assert_error(shutter.get(path, alice), 404, "APINotFoundError")
            assert "format" in meta["error_message"]
    # without a token too: the format is refused before anything else
    assert_error(shutter.get("/v1/users/self.xml"), 404, "APINotFoundError")


def test_a_suffix_is_stripped_once_and_only_from_the_last_segment(shutter, alice):
    assert_error(shutter.get("/v1/users/self.json.json", alice), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/self.json/follows", alice), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/.json", alice), 400, "APIInvalidParametersError")
    assert_error(shutter.get("/v1/users/1.5", alice), 400, "APIInvalidParametersError")  # no format: an id
    # outside /v1 nothing is stripped
    assert_error(shutter.client.post("/oauth/access_token.json", data={}), 404, "APINotFoundError")


# --- bodies --------------------------------------------------------------------------------


def raw_post(shutter, path: str, body: bytes, content_type: str | None = None, **query):
    """A POST of exactly `body`, with no Content-Type header unless one is given."""
    headers = {"Content-Type": content_type} if content_type else {}
    return shutter.client.open(path, method="POST", query_string=query, data=body, headers=headers)


def test_a_body_without_a_content_type_is_read_as_a_form(shutter, alice, bob):
    client = shutter.app_client()
    body = urlencode({"client_id": client["client_id"], "client_secret": client["client_secret"],
                      "redirect_uri": "None", "grant_type": "password", "username": "alice",
                      "password": PASSWORD, "scope": "basic comments"}).encode()
    response = raw_post(shutter, "/oauth/access_token", body)  # as the official client sends it
    assert response.status_code == 200, response.json
    assert response.json["user"]["username"] == "alice"

    photo = post_photo(shutter, bob)
    response = raw_post(shutter, f"/v1/media/{photo}_{bob.id}/comments.json", b"text=h%C3%A9llo+%26+co",
                        access_token=alice.token)
    assert response.status_code == 200, response.json
    assert response.json["data"]["text"] == "héllo & co"


def test_a_json_body_is_taken_wherever_a_form_is(shutter, alice, bob):
    client = shutter.app_client()
    login = shutter.client.post("/oauth/access_token", json={
        "client_id": client["client_id"], "client_secret": client["client_secret"], "grant_type": "password",
        "username": "bob", "password": PASSWORD, "scope": "basic relationships"})
    assert login.status_code == 200, login.json
    bobs_token = login.json["access_token"]
    # the token in the JSON body too, as a form field may carry it
    response = shutter.client.post(f"/v1/users/{alice.id}/relationship", json={"action": "follow",
                                                                               "access_token": bobs_token})
    assert response.status_code == 200, response.json
    assert response.json["data"]["outgoing_status"] == "follows"
    edited = shutter.client.post("/v1/users/self", json={"bio": "from JSON", "is_private": True},
                                 query_string={"access_token": alice.token})
    assert edited.status_code == 200, edited.json
    assert (edited.json["data"]["bio"], edited.json["data"]["is_private"]) == ("from JSON", True)
    # the same validation as a form's
    photo = post_photo(shutter, bob)
    meta = assert_error(shutter.client.post(f"/v1/media/{photo}_{bob.id}/comments", json={"text": 5},
                                            query_string={"access_token": alice.token}),
                        400, "APIInvalidParametersError")
    assert "text" in meta["error_message"]


def test_a_bad_json_body_is_a_400_envelope(shutter, alice, subtests):
    for body in [b"{not json", b"[1, 2]", b'"text"', b""]:
        with subtests.test(body=body):
            response = raw_post(shutter, f"/v1/users/{alice.id}/relationship", body, "application/json",
                                access_token=alice.token)
            assert_error(response, 400, "APIInvalidParametersError")


# --- OAuth errors ------------------------------------------------------------------------


def test_oauth_errors_carry_error_message_at_the_top_level_too(shutter, alice):
    client = shutter.app_client()
    response = shutter.login("alice", password="wrong", client=client)
    meta = assert_error(response, 400, "OAuthException")
    assert {key: response.json[key] for key in ("code", "error_type", "error_message")} == meta
    response = shutter.client.get("/oauth/authorize", query_string={"client_id": "nope", "redirect_uri": "http://x/"})
    assert response.json["error_message"] == assert_error(response, 400, "OAuthClientException")["error_message"]
    # /v1 keeps the envelope alone
    assert set(shutter.get("/v1/users/self").json) == {"meta"}


def test_a_code_exchange_with_redirect_uri_none_asks_for_a_real_one(shutter, alice):
    client = shutter.app_client()
    response = shutter.client.post("/oauth/access_token", data={
        "client_id": client["client_id"], "client_secret": client["client_secret"], "redirect_uri": "None",
        "grant_type": "authorization_code", "code": "abc"})
    assert "needs code and redirect_uri" in assert_error(response, 400, "OAuthParameterException")["error_message"]


# --- signatures ----------------------------------------------------------------------------


@pytest.fixture
def signed(shutter, alice):
    client = shutter.register_client("alice", enforce_signed_requests="true").json["data"]
    return shutter.login("alice", client=client).json["access_token"], client["client_secret"]


def test_the_signature_forms_accepted(shutter, signed, subtests):
    token, secret = signed
    params = {"access_token": token, "count": "5"}
    auth_only = {"access_token": token}
    accepted = {  # what: (the path requested, the sigs sent)
        "all params (v1's documented form)": ("/v1/users/self", [sign(secret, "/users/self", params)]),
        "with the suffix that was sent": ("/v1/users/self.json", [sign(secret, "/users/self.json", params)]),
        "the auth param only (the client's first sig)": (
            "/v1/users/self.json", [sign(secret, "/users/self.json", auth_only)]),
        "one right among wrong ones": ("/v1/users/self.json", ["0" * 64, sign(secret, "/users/self.json", auth_only)]),
    }
    for what, (path, sigs) in accepted.items():
        with subtests.test(what=what):
            response = shutter.client.get(path, query_string=[*params.items(), *(("sig", s) for s in sigs)])
            assert response.status_code == 200, response.json


def test_the_signature_forms_refused(shutter, signed, subtests):
    token, secret = signed
    params = {"access_token": token, "count": "5"}
    refused = {  # what: (the path requested, the sig sent)
        "the suffix left out of the signed endpoint": (
            "/v1/users/self.json", sign(secret, "/users/self", {"access_token": token})),
        "a suffix that was not sent": ("/v1/users/self", sign(secret, "/users/self.json", params)),
        "the endpoint alone": ("/v1/users/self.json", sign(secret, "/users/self.json", {})),
        "another param set": ("/v1/users/self.json", sign(secret, "/users/self.json", {**params, "count": "6"})),
        "another token": ("/v1/users/self.json", sign(secret, "/users/self.json", {"access_token": token + "x"})),
    }
    for what, (path, sig) in refused.items():
        with subtests.test(what=what):
            response = shutter.client.get(path, query_string=[*params.items(), ("sig", sig)])
            assert_error(response, 403, "OAuthForbiddenException")
    too_many = [("sig", "0" * 64)] * 4 + [("sig", sign(secret, "/users/self", params))]
    assert_error(shutter.client.get("/v1/users/self", query_string=[*params.items(), *too_many]), 403,
                 "OAuthForbiddenException")


# --- next_url -----------------------------------------------------------------------------


def test_next_url_is_absolute_and_carries_the_auth_as_it_was_sent(shutter, alice, bob):
    for _ in range(3):
        post_photo(shutter, bob)
    response = shutter.get(f"/v1/users/{bob.id}/media/recent.json", alice, count=2)
    next_url = urlsplit(response.json["pagination"]["next_url"])
    assert (next_url.scheme, next_url.netloc, next_url.path) == ("http", "localhost",
                                                                 f"/v1/users/{bob.id}/media/recent.json")
    assert dict(parse_qsl(next_url.query)) == {"access_token": alice.token, "count": "2",
                                               "max_id": response.json["pagination"]["next_max_id"]}
    # a token sent as a Bearer header stays there
    response = shutter.client.get(f"/v1/users/{bob.id}/media/recent", query_string={"count": 2},
                                  headers={"Authorization": f"Bearer {alice.token}"})
    assert "access_token" not in response.json["pagination"]["next_url"]


def test_a_signed_requests_next_url_is_signed(shutter, signed, bob):
    token, secret = signed
    for _ in range(3):
        post_photo(shutter, bob)
    params = {"access_token": token, "count": "2"}
    path = f"/users/{bob.id}/media/recent.json"
    response = shutter.client.get(f"/v1{path}", query_string={**params, "sig": sign(secret, path, params)})
    next_query = dict(parse_qsl(urlsplit(response.json["pagination"]["next_url"]).query))
    assert next_query.pop("sig") == sign(secret, path, next_query)
    following = shutter.client.get(response.json["pagination"]["next_url"])
    assert following.status_code == 200 and len(following.json["data"]) == 1, following.json
    # unsigned requests get unsigned next_urls (a client that does not enforce)
    unsigned = shutter.get(f"/v1{path}", shutter.account("carol"), count=2)
    assert "sig" not in dict(parse_qsl(urlsplit(unsigned.json["pagination"]["next_url"]).query))


def test_json_body_fields_are_signed_as_text(shutter, signed, bob):
    token, secret = signed
    path = f"/users/{bob.id}/relationship"
    body = {"action": "follow", "access_token": token}
    body["sig"] = sign(secret, path, {"action": "follow", "access_token": token})
    response = shutter.client.post(f"/v1{path}", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.json
