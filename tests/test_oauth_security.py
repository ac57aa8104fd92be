"""Issue 11, items 4 and 6: the publish scope, and OAuth's redirect_uri, state,
authorization codes, revocation and the token cache's race with it."""
from __future__ import annotations

import base64
import io
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.orm import Session

from app.accounts.auth import sha256
from models import AuthorizationCode, Follow, Photo, make_engine, utcnow
from tests import images
from tests.support import PASSWORD, Shutter, assert_error, basic_auth

REDIRECT_URI = "http://localhost:9999/callback"
V1_SCOPES = "basic comments relationships likes"  # all of v1's, without publish


def services_of(shutter: Shutter):
    return shutter.client.application.extensions["shutter"]


def scalar(shutter: Shutter, statement):
    with services_of(shutter).db.session() as session:
        return session.scalar(statement)


def authorize(shutter: Shutter, client: dict, redirect_uri: str = REDIRECT_URI, **params):
    query = {"client_id": client["client_id"], "redirect_uri": redirect_uri, **params}
    return shutter.client.get("/oauth/authorize", query_string=query, headers=basic_auth("alice", PASSWORD))


def exchange(shutter: Shutter, client: dict, code: str, redirect_uri: str = REDIRECT_URI):
    return shutter.client.post("/oauth/access_token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": client["client_id"], "client_secret": client["client_secret"],
    })


def code_of(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


def me(shutter: Shutter, token: str):
    return shutter.client.get("/v1/users/self", query_string={"access_token": token})


def revoke(shutter: Shutter, token: str, client: dict | None = None, headers=None, **fields):
    data = {"token": token, **fields}
    if client is not None:
        data.update(client_id=client["client_id"], client_secret=client["client_secret"])
    return shutter.client.post("/oauth/revoke", data=data, headers=headers or {})


@pytest.fixture
def alice(shutter):
    return shutter.account("alice")


# -- item 4: publish ------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["basic", V1_SCOPES])
def test_a_token_without_publish_cannot_upload(shutter, scope):
    reader = shutter.account("reader", scope=scope)
    response = shutter.post("/v1/media/upload", reader, files={"photo": (io.BytesIO(images.jpeg(64, 48)), "a.jpg")})
    assert_error(response, 400, "OAuthPermissionsException")
    assert scalar(shutter, select(func.count()).select_from(Photo)) == 0


@pytest.mark.parametrize("scope", ["basic", V1_SCOPES])
def test_a_token_without_publish_cannot_delete(shutter, scope):
    owner = shutter.account("owner")
    response = shutter.post("/v1/media/upload", owner, files={"photo": (io.BytesIO(images.jpeg(64, 48)), "a.jpg")})
    assert response.status_code == 202, response.get_data(as_text=True)
    media_id = response.json["data"]["id"]
    read_only = shutter.login("owner", scope=scope).json["access_token"]
    response = shutter.client.delete(f"/v1/media/{media_id}", query_string={"access_token": read_only})
    assert_error(response, 400, "OAuthPermissionsException")
    assert scalar(shutter, select(func.count()).select_from(Photo)) == 1
    assert shutter.get(f"/v1/media/{media_id}", owner).status_code == 200


@pytest.mark.parametrize("scope", ["basic", V1_SCOPES])
def test_a_token_without_publish_cannot_edit_the_profile(shutter, scope):
    owner = shutter.account("owner", private=True)
    fan = shutter.account("fan")
    assert shutter.relate(fan, owner, "follow").json["data"]["outgoing_status"] == "requested"
    read_only = shutter.login("owner", scope=scope).json["access_token"]
    response = shutter.client.post("/v1/users/self", data={
        "access_token": read_only, "full_name": "Mallory", "is_private": "false",
        "password": "a brand new password", "current_password": PASSWORD})
    assert_error(response, 400, "OAuthPermissionsException")
    profile = shutter.get("/v1/users/self", owner).json["data"]
    assert profile["full_name"] == "" and profile["is_private"] is True
    # the pending request was not approved, and the password is unchanged
    assert scalar(shutter, select(Follow.status)) == "pending"
    assert shutter.login("owner").status_code == 200


def test_publish_is_granted_at_the_token_exchange(shutter):
    writer = shutter.account("writer", scope="basic publish")
    response = shutter.post("/v1/users/self", writer, full_name="Writer")
    assert response.status_code == 200 and response.json["data"]["full_name"] == "Writer"


def test_docs_describe_the_publish_scope(shutter):
    schemes = shutter.client.get("/docs").json["components"]["securitySchemes"]
    assert "publish" in schemes["oauth2"]["flows"]["password"]["scopes"]


# -- item 6: redirect_uri, exactly after normalisation --------------------------------
@pytest.mark.parametrize("redirect_uri", [
    REDIRECT_URI + "/%2e%2e/evil", REDIRECT_URI + "/%2E%2E/%2e%2e/evil", REDIRECT_URI + "/../../evil",
    REDIRECT_URI + "/ios", REDIRECT_URI + "/", REDIRECT_URI + "?next=evil", REDIRECT_URI + "#x",
    "http://localhost:9999/callbac%6b%2fx", "http://localhost:9999/", "http://localhost:9999",
    "https://localhost:9999/callback", "http://localhost:9998/callback", "http://evil.example/callback",
    "http://localhost.evil.example:9999/callback", "http://evil.example@localhost:9999/callback",
    "http://localhost:9999@evil.example/callback", "//localhost:9999/callback", "/callback",
    "http://localhost:99999/callback", "ftp://localhost:9999/callback",
])
def test_authorize_refuses_a_redirect_uri_that_is_not_the_registered_one(shutter, alice, redirect_uri):
    assert_error(authorize(shutter, shutter.app_client(), redirect_uri), 400, "OAuthParameterException")


@pytest.mark.parametrize("redirect_uri", [
    REDIRECT_URI, "HTTP://LocalHost:9999/callback", "http://localhost:9999/%63allback",
    "http://localhost:9999/./callback", "http://localhost:9999/x/../callback",
    "http://localhost:9999/callback/%2e%2e/callback",
])
def test_authorize_accepts_a_spelling_of_the_registered_redirect_uri(shutter, alice, redirect_uri):
    client = shutter.app_client()
    response = authorize(shutter, client, redirect_uri)
    # back to the registered spelling; the code is bound to the one given
    assert response.headers["Location"].startswith(REDIRECT_URI + "?code=")
    assert exchange(shutter, client, code_of(response), redirect_uri).status_code == 200


def test_a_default_port_is_the_same_redirect_uri(shutter, alice):
    client = shutter.register_client("alice", redirect_uri="https://app.example/cb").json["data"]
    assert authorize(shutter, client, "https://app.example:443/cb").status_code == 302
    assert_error(authorize(shutter, client, "https://app.example:8443/cb"), 400, "OAuthParameterException")


# -- item 6: state ---------------------------------------------------------------------
def test_authorize_carries_state_to_the_code_redirect(shutter, alice):
    response = authorize(shutter, shutter.app_client(), state="xyz/ &=?#é")
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["state"] == ["xyz/ &=?#é"]


def test_authorize_carries_state_to_the_token_redirect(shutter, alice):
    response = authorize(shutter, shutter.app_client(), response_type="token", state="abc123")
    assert response.status_code == 302
    fragment = parse_qs(urlsplit(response.headers["Location"]).fragment)
    assert fragment["state"] == ["abc123"] and fragment["access_token"]


def test_a_redirect_without_state_has_none(shutter, alice):
    response = authorize(shutter, shutter.app_client())
    assert "state" not in parse_qs(urlsplit(response.headers["Location"]).query)


# -- item 6: authorization codes -------------------------------------------------------
def test_an_authorization_code_lives_ten_minutes(shutter, alice):
    client = shutter.app_client()
    before = utcnow()
    code = code_of(authorize(shutter, client))
    with services_of(shutter).db.session() as session:
        expires_at = session.scalar(select(AuthorizationCode.expires_at))
        assert before + timedelta(minutes=10) <= expires_at <= utcnow() + timedelta(minutes=10)
        # ten minutes later (the row's clock moved back, rather than the test waiting)
        session.execute(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert_error(exchange(shutter, client, code), 400, "OAuthException")


def test_a_spent_authorization_code_stays_spent(shutter, alice):
    client = shutter.app_client()
    code = code_of(authorize(shutter, client))
    assert exchange(shutter, client, code).status_code == 200
    for _ in range(2):
        assert_error(exchange(shutter, client, code), 400, "OAuthException")
    assert scalar(shutter, select(func.count()).select_from(AuthorizationCode)
                 .where(AuthorizationCode.code_hash == sha256(code), AuthorizationCode.used_at.is_not(None))) == 1


# -- item 6: revocation (RFC 7009) -----------------------------------------------------
def test_a_client_revokes_its_token_with_form_credentials(shutter, alice):
    assert me(shutter, alice.token).status_code == 200  # cached now
    response = revoke(shutter, alice.token, shutter.app_client(), token_type_hint="access_token")
    assert response.status_code == 200 and response.json == {"meta": {"code": 200}, "data": None}
    assert_error(me(shutter, alice.token), 400, "OAuthAccessTokenException")
    assert revoke(shutter, alice.token, shutter.app_client()).status_code == 200  # again: still 200


def test_a_client_revokes_its_token_with_http_basic(shutter, alice):
    client = shutter.app_client()
    credentials = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    response = revoke(shutter, alice.token, headers={"Authorization": f"Basic {credentials}"})
    assert response.status_code == 200, response.json
    assert_error(me(shutter, alice.token), 400, "OAuthAccessTokenException")


def test_revoking_an_unknown_token_is_200(shutter, alice):
    assert revoke(shutter, "no-such-token", shutter.app_client()).status_code == 200
    assert me(shutter, alice.token).status_code == 200


def test_a_client_cannot_revoke_another_clients_token(shutter, alice):
    other = shutter.register_client("alice").json["data"]
    assert_error(revoke(shutter, alice.token, other), 400, "OAuthClientException")
    assert me(shutter, alice.token).status_code == 200


def test_revocation_needs_a_good_client(shutter, alice, subtests):
    client = shutter.app_client()
    with subtests.test("no client"):
        assert_error(revoke(shutter, alice.token), 400, "OAuthClientException")
    with subtests.test("wrong secret"):
        assert_error(revoke(shutter, alice.token, {**client, "client_secret": "wrong"}), 400, "OAuthClientException")
    with subtests.test("wrong basic"):
        headers = basic_auth(client["client_id"], "wrong")
        assert_error(revoke(shutter, alice.token, headers=headers), 401, "OAuthClientException")
    with subtests.test("no token"):
        response = shutter.client.post("/oauth/revoke", data={"client_id": client["client_id"],
                                                               "client_secret": client["client_secret"]})
        assert_error(response, 400, "APIInvalidParametersError")
    assert me(shutter, alice.token).status_code == 200


# -- item 6: a password change revokes every token --------------------------------------
def test_a_password_change_revokes_every_token_of_the_account(shutter, alice):
    other_client = shutter.register_client("alice").json["data"]
    second = shutter.login("alice", client=other_client).json["access_token"]
    bob = shutter.account("bob")
    for token in (alice.token, second, bob.token):
        assert me(shutter, token).status_code == 200  # cached
    response = shutter.post("/v1/users/self", alice, password="a brand new password", current_password=PASSWORD)
    assert response.status_code == 200, response.json
    for token in (alice.token, second):
        assert_error(me(shutter, token), 400, "OAuthAccessTokenException")
    assert me(shutter, bob.token).status_code == 200
    assert_error(shutter.login("alice"), 400, "OAuthException")
    assert shutter.login("alice", password="a brand new password").status_code == 200


@pytest.mark.parametrize("current", [None, "wrong password"])
def test_a_password_change_needs_the_current_password(shutter, alice, current):
    fields = {"password": "a brand new password"} | ({"current_password": current} if current else {})
    assert_error(shutter.post("/v1/users/self", alice, **fields), 400, "OAuthException")
    assert me(shutter, alice.token).status_code == 200
    assert shutter.login("alice").status_code == 200


# -- item 6: the token cache and revocation race -------------------------------------------
@pytest.fixture
def reader_engine(stack):
    """A second process's view of the database for a token lookup that races a revocation.
    SQLite: a plain engine, whose reads take no write lock (Shutter's BEGIN IMMEDIATE would
    make the revoker wait for the reader, and there would be no race to see)."""
    url = stack["database_url"]
    engine = create_engine(url) if url.startswith("sqlite") else make_engine(url)
    yield engine
    engine.dispose()


def _on_token_lookup(engine, action):
    """Run `action` once, right after the lookup's query ran and before its result is cached."""
    pending = [action]

    def after(_conn, _cursor, statement, *_args):
        if pending and "FROM access_tokens" in statement and "revoked_at IS NULL" in statement:
            pending.pop()()

    event.listen(engine, "after_cursor_execute", after)


def test_a_lookup_that_read_before_the_revoking_commit_does_not_cache_the_token(shutter, alice, reader_engine):
    services = services_of(shutter)
    user_id = int(alice.id)

    def revoke_all():  # another request: the password change's revocation, committed
        with services.db.session() as session:
            services.tokens.revoke_all(session, user_id)
            session.commit()

    _on_token_lookup(reader_engine, revoke_all)
    with Session(reader_engine) as session:
        info = services.tokens.resolve(session, alice.token)
    assert info is not None and info.user_id == user_id  # it read the token as valid, before the commit
    assert services.redis.get(services.tokens.key(alice.token)) is None
    assert_error(me(shutter, alice.token), 400, "OAuthAccessTokenException")
    assert_error(shutter.get("/v1/users/self/feed", alice), 400, "OAuthAccessTokenException")


def test_the_cache_is_cleared_after_the_revoking_commit_not_before(shutter, alice, reader_engine):
    services = services_of(shutter)
    with services.db.session() as session:
        services.tokens.revoke_all(session, int(alice.id))
        # a lookup between the revocation and its commit sees the token valid and caches it ...
        with Session(reader_engine) as reader:
            assert services.tokens.resolve(reader, alice.token) is not None
        session.commit()  # ... and the commit drops it
    assert_error(me(shutter, alice.token), 400, "OAuthAccessTokenException")


def test_a_revocation_endpoint_lookup_race_is_refused_too(shutter, alice, reader_engine):
    services = services_of(shutter)
    client = shutter.app_client()
    _on_token_lookup(reader_engine, lambda: revoke(shutter, alice.token, client))
    with Session(reader_engine) as session:
        assert services.tokens.resolve(session, alice.token) is not None
    assert_error(me(shutter, alice.token), 400, "OAuthAccessTokenException")
