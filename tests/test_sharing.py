"""Linked accounts and sharing to Twitter and Facebook (issue 14, items 4–6), on both stacks.

Twitter and Facebook are tests/oauth_providers.py: real OAuth servers (oauthlib's) on loopback
that verify every signature and token and record what was posted. The OAuth flows run end to
end: the app's connect, the "browser" at the provider's page (requests, no redirects followed),
the app's callback. Shares run in-process through services.sharing (the same call the task
makes), and end to end through real Celery workers (a gevent io worker, as in production).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select, text

from app.media import pipeline
from cryptography.fernet import Fernet, InvalidToken

from app.platform.keys import oauth_state_key
from app.sharing.crypto import TokenCipher, derived_key
from models import Outbox, Photo, Share
from tests import images
from tests.oauth_providers import FACEBOOK_SECRET, INSECURE_ENV, TWITTER_SECRET
from tests.support import Shutter, assert_error

NETWORKS = ("twitter", "facebook")
JPEG = images.jpeg(800, 600)


@pytest.fixture
def app(make_app, oauth_settings):
    return make_app(**{f.name: getattr(oauth_settings, f.name) for f in dataclasses.fields(oauth_settings)})


@pytest.fixture
def shutter(app) -> Shutter:
    return Shutter(app.test_client())


@pytest.fixture
def providers(twitter_provider, facebook_provider):
    return {"twitter": twitter_provider, "facebook": facebook_provider}


def services(app):
    return app.extensions["shutter"]


# -- helpers ---------------------------------------------------------------------------------
def connect(shutter: Shutter, account, network: str):
    response = shutter.get(f"/v1/users/self/linked/{network}/connect", account)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.json["data"]["authorize_url"] == response.headers["Location"]
    return response.headers["Location"]


def at_provider(authorize_url: str) -> str:
    """The user's browser on the provider's page: they approve; where it sends them back."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def link(shutter: Shutter, account, network: str) -> dict:
    back = at_provider(connect(shutter, account, network))
    response = shutter.client.get(back)  # the browser: no access token
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["data"]


def ready_photo(app, shutter: Shutter, account, share_to: str = "twitter,facebook", caption="sunset #sea") -> int:
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(JPEG), "p.jpg")},
                            caption=caption, share_to=share_to)
    assert response.status_code == 202, response.json
    photo_id = int(response.json["data"]["id"].split("_")[0])
    svc = services(app)
    with svc.db.session() as session:
        assert pipeline.process_photo(session, svc.storage, photo_id)
        assert pipeline.publish_photo(session, svc.celery, photo_id, share_networks=svc.sharing.enabled_networks())
    return photo_id


def share(app, photo_id: int, network: str):
    with app.app_context():
        return services(app).sharing.share(photo_id, network)


def share_row(app, photo_id: int, network: str) -> Share | None:
    with services(app).db.session() as session:
        return session.get(Share, (photo_id, network))


def link_of(app, photo_id: int) -> str:
    with services(app).db.session() as session:
        return services(app).serializer.photo_link(session.get(Photo, photo_id))


# -- linking ---------------------------------------------------------------------------------
@pytest.mark.parametrize("network", NETWORKS)
def test_connect_and_callback_link_the_account(shutter, providers, network):
    alice = shutter.account("alice")
    authorize_url = connect(shutter, alice, network)
    assert authorize_url.startswith(providers[network].url)
    back = at_provider(authorize_url)
    assert urlsplit(back).path == f"/v1/users/self/linked/{network}/callback"
    response = shutter.client.get(back)
    assert response.status_code == 200, response.json
    account = response.json["data"]
    expected = ({"remote_user_id": "783214", "screen_name": "alice_tw"} if network == "twitter"
                else {"remote_user_id": "100004242", "screen_name": "Alice Liddell"})
    assert account == {**account, "network": network, **expected}
    listed = shutter.get("/v1/users/self/linked", alice).json["data"]
    assert [a["network"] for a in listed] == [network]
    # the callback's state is single-use: the same redirect again is refused
    assert_error(shutter.client.get(back), 400, "APIInvalidParametersError")


@pytest.mark.parametrize("network", NETWORKS)
def test_tokens_are_encrypted_at_rest(app, shutter, providers, network):
    alice = shutter.account("alice")
    link(shutter, alice, network)
    provider = providers[network]
    if network == "twitter":
        token, secret = provider.access_token_of("783214")
    else:
        token, secret = provider.access_token_of("100004242"), ""
    with services(app).db.session() as session:
        raw = session.execute(text("SELECT access_token, access_token_secret FROM linked_accounts")).one()
    assert token not in raw.access_token and (not secret or secret not in raw.access_token_secret)
    cipher = TokenCipher(services(app).settings.linked_account_keys, services(app).settings.secret_key)
    assert cipher.decrypt(raw.access_token) == token
    assert cipher.decrypt(raw.access_token_secret) == secret


def test_a_rotated_key_still_opens_old_tokens():
    old_key, new_key = derived_key("old secret"), Fernet.generate_key().decode()
    sealed = TokenCipher([], "old secret").encrypt("tok")  # no LINKED_ACCOUNT_KEYS: derived from SECRET_KEY
    rotating = TokenCipher([new_key, old_key], "")
    assert rotating.decrypt(sealed) == "tok"
    assert TokenCipher([new_key], "").decrypt(rotating.rotate(sealed)) == "tok"
    with pytest.raises(InvalidToken):
        TokenCipher([new_key], "").decrypt(sealed)
    with pytest.raises(ValueError):
        TokenCipher(["not-a-key"], "")


def test_bad_expired_or_foreign_state_is_a_400(app, shutter, providers):
    alice = shutter.account("alice")
    back = at_provider(connect(shutter, alice, "facebook"))
    query = parse_qs(urlsplit(back).query)
    assert_error(shutter.client.get("/v1/users/self/linked/facebook/callback",
                                    query_string={"code": query["code"][0], "state": "forged"}),
                 400, "APIInvalidParametersError")
    assert_error(shutter.client.get("/v1/users/self/linked/facebook/callback"), 400, "APIInvalidParametersError")
    # a Facebook flow's state does not complete a Twitter callback (and is spent by trying)
    assert_error(shutter.client.get("/v1/users/self/linked/twitter/callback",
                                    query_string={"state": query["state"][0], "oauth_token": "x",
                                                  "oauth_verifier": "y"}), 400, "APIInvalidParametersError")
    assert_error(shutter.client.get(back), 400, "APIInvalidParametersError")
    # an expired one: the state's Redis entry has a TTL
    back = at_provider(connect(shutter, alice, "facebook"))
    state = parse_qs(urlsplit(back).query)["state"][0]
    assert 0 < services(app).redis.ttl(oauth_state_key(state)) <= 600
    services(app).redis.delete(oauth_state_key(state))
    assert_error(shutter.client.get(back), 400, "APIInvalidParametersError")
    assert shutter.get("/v1/users/self/linked", alice).json["data"] == []


@pytest.mark.parametrize("network", NETWORKS)
def test_a_denial_on_the_providers_page_links_nothing(shutter, providers, network):
    alice = shutter.account("alice")
    providers[network].deny_next = True
    back = at_provider(connect(shutter, alice, network))
    assert_error(shutter.client.get(back), 400, "APIInvalidParametersError")
    assert shutter.get("/v1/users/self/linked", alice).json["data"] == []


def test_unlink_and_unknown_networks(shutter, providers):
    alice = shutter.account("alice")
    link(shutter, alice, "twitter")
    link(shutter, alice, "facebook")
    assert [a["network"] for a in shutter.get("/v1/users/self/linked", alice).json["data"]] == ["facebook", "twitter"]
    assert shutter.delete("/v1/users/self/linked/twitter", alice).status_code == 200
    assert [a["network"] for a in shutter.get("/v1/users/self/linked", alice).json["data"]] == ["facebook"]
    assert shutter.delete("/v1/users/self/linked/twitter", alice).status_code == 200  # not linked: still fine
    assert_error(shutter.delete("/v1/users/self/linked/myspace", alice), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/users/self/linked/myspace/connect", alice), 404, "APINotFoundError")
    # linking again replaces the row
    link(shutter, alice, "facebook")
    assert len(shutter.get("/v1/users/self/linked", alice).json["data"]) == 1


def test_connect_needs_a_token_with_publish(shutter, providers):
    reader = shutter.account("reader", scope="basic")
    assert_error(shutter.client.get("/v1/users/self/linked/twitter/connect"), 400, "OAuthParameterException")
    assert_error(shutter.get("/v1/users/self/linked/twitter/connect", reader), 400, "OAuthPermissionsException")


# -- sharing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("network", NETWORKS)
def test_a_share_posts_the_standard_image_with_caption_and_link(app, shutter, providers, network):
    alice = shutter.account("alice")
    link(shutter, alice, network)
    photo_id = ready_photo(app, shutter, alice)
    with services(app).db.session() as session:
        promised = session.scalars(select(Outbox).where(Outbox.photo_id == photo_id, Outbox.kind == "publish_photo")).one()
        photo = session.get(Photo, photo_id)
    assert {"tasks.sharing.share_twitter", "tasks.sharing.share_facebook"} <= set(promised.payload["tasks"])
    assert share(app, photo_id, network).result == "posted"
    [post] = providers[network].posts
    link_ = link_of(app, photo_id)
    assert "sunset #sea" in post.text and link_ in post.text
    standard = services(app).storage.get(photo.derivatives["standard_resolution"]["key"])
    assert post.image == standard  # never the original (it keeps EXIF and GPS)
    row = share_row(app, photo_id, network)
    assert (row.status, row.remote_id) == ("posted", post.id)
    # run again (a redelivered task): nothing more is posted
    assert share(app, photo_id, network).result == "already_posted"
    assert len(providers[network].posts) == 1


@pytest.mark.parametrize("network", NETWORKS)
def test_concurrent_duplicate_shares_post_once(app, shutter, providers, network):
    alice = shutter.account("alice")
    link(shutter, alice, network)
    photo_id = ready_photo(app, shutter, alice)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: share(app, photo_id, network).result, range(4)))
    assert results.count("posted") == 1, results
    assert set(results) <= {"posted", "in_progress", "already_posted"}
    assert len(providers[network].posts) == 1


@pytest.mark.parametrize("network,endpoint", [("twitter", "statuses/update"), ("facebook", "me/photos")])
def test_an_unknown_outcome_is_checked_not_reposted(app, shutter, providers, network, endpoint):
    alice = shutter.account("alice")
    link(shutter, alice, network)
    photo_id = ready_photo(app, shutter, alice)
    providers[network].fault(endpoint, hang=2.5)  # posted, then no answer within the 1 s timeout
    outcome = share(app, photo_id, network)
    assert outcome.result == "provider_error" and outcome.retry_in > 0
    assert share_row(app, photo_id, network).status == "unknown"
    assert len(providers[network].posts) == 1
    # the retry looks at the user's recent posts first, finds it, and posts nothing
    assert share(app, photo_id, network).result == "already_posted"
    assert len(providers[network].posts) == 1
    row = share_row(app, photo_id, network)
    assert (row.status, row.remote_id) == ("posted", providers[network].posts[0].id)


@pytest.mark.parametrize("network,endpoint", [("twitter", "statuses/update"), ("facebook", "me/photos")])
def test_a_5xx_before_posting_is_retried_and_posts_once(app, shutter, providers, network, endpoint):
    alice = shutter.account("alice")
    link(shutter, alice, network)
    photo_id = ready_photo(app, shutter, alice)
    providers[network].fault(endpoint, status=503, headers={"Retry-After": "3"})
    outcome = share(app, photo_id, network)
    assert outcome.result == "provider_error" and outcome.retry_in >= 0.5
    assert providers[network].posts == []
    assert share(app, photo_id, network).result == "posted"  # looked (nothing there), then posted
    assert len(providers[network].posts) == 1


def test_a_5xx_after_posting_is_found_on_retry(app, shutter, providers):
    alice = shutter.account("alice")
    link(shutter, alice, "facebook")
    photo_id = ready_photo(app, shutter, alice)
    providers["facebook"].fault("me/photos", status=500, after=True)
    assert share(app, photo_id, "facebook").result == "provider_error"
    assert share(app, photo_id, "facebook").result == "already_posted"
    assert len(providers["facebook"].posts) == 1


@pytest.mark.parametrize("network,endpoint", [("twitter", "statuses/update"), ("facebook", "me/photos")])
def test_a_429_waits_for_the_providers_reset(app, shutter, providers, network, endpoint):
    alice = shutter.account("alice")
    link(shutter, alice, network)
    photo_id = ready_photo(app, shutter, alice)
    headers = ({"x-rate-limit-reset": str(int(time.time()) + 30), "x-rate-limit-remaining": "0"}
               if network == "twitter" else {"Retry-After": "30"})
    providers[network].fault(endpoint, status=429, headers=headers)
    outcome = share(app, photo_id, network)
    assert outcome.result == "rate_limited"
    assert 28 <= outcome.retry_in <= 31  # the reset, not the 1-2 s backoff
    assert share_row(app, photo_id, network).status == "retry"
    assert share(app, photo_id, network).result == "posted"
    assert len(providers[network].posts) == 1


@pytest.mark.parametrize("network", NETWORKS)
def test_a_revoked_token_unlinks_and_tells_the_user(app, shutter, providers, network):
    alice = shutter.account("alice")
    bob = shutter.account("bob")
    link(shutter, alice, network)
    assert shutter.post(f"/v1/users/{alice.id}/relationship", bob, action="follow").status_code == 200
    provider = providers[network]
    token = provider.access_token_of("783214")[0] if network == "twitter" else provider.access_token_of("100004242")
    provider.revoke(token)
    photo_id = ready_photo(app, shutter, alice)
    assert share(app, photo_id, network).result == "revoked"
    assert provider.posts == []
    assert shutter.get("/v1/users/self/linked", alice).json["data"] == []
    assert share_row(app, photo_id, network).status == "revoked"
    feed = shutter.get("/v1/users/self/activity", alice)
    assert feed.status_code == 200, feed.json
    kinds = [item["type"] for item in feed.json["data"]]
    assert kinds == ["linked_account_revoked", "follow"]  # the existing types still render
    notice = feed.json["data"][0]
    assert notice["network"] == network and notice["from"]["id"] == alice.id
    assert notice["media"]["id"].startswith(f"{photo_id}_")
    # the run again does not post, and does not tell twice
    assert share(app, photo_id, network).result == "not_linked"
    assert len(shutter.get("/v1/users/self/activity", alice).json["data"]) == 2


def test_share_to_with_no_linked_account_posts_nothing(app, shutter, providers):
    alice = shutter.account("alice")
    photo_id = ready_photo(app, shutter, alice)
    assert share(app, photo_id, "twitter").result == "not_linked"
    assert share(app, photo_id, "facebook").result == "not_linked"
    assert providers["twitter"].posts == providers["facebook"].posts == []
    assert share_row(app, photo_id, "twitter") is None


def test_only_the_networks_in_share_to_are_posted(app, shutter, providers):
    alice = shutter.account("alice")
    link(shutter, alice, "twitter")
    link(shutter, alice, "facebook")
    photo_id = ready_photo(app, shutter, alice, share_to="facebook")
    assert share(app, photo_id, "twitter").result == "skipped"
    assert share(app, photo_id, "facebook").result == "posted"
    assert providers["twitter"].posts == [] and len(providers["facebook"].posts) == 1


def test_no_oauth_settings_no_sharing(make_app, settings):
    app = make_app()  # the suite's settings: no Twitter or Facebook app
    shutter = Shutter(app.test_client())
    alice = shutter.account("alice")
    svc = services(app)
    assert not svc.sharing.enabled("twitter") and not svc.sharing.enabled("facebook")
    photo_id = ready_photo(app, shutter, alice)
    with svc.db.session() as session:
        assert session.get(Photo, photo_id).status == "ready"
        promised = session.scalars(select(Outbox).where(Outbox.photo_id == photo_id,
                                                        Outbox.kind == "publish_photo")).one()
    assert not [name for name in promised.payload["tasks"] if name.startswith("tasks.sharing.")]
    assert share(app, photo_id, "twitter").result == "skipped"
    assert_error(shutter.get("/v1/users/self/linked/twitter/connect", alice), 400, "APIInvalidParametersError")


def test_a_share_logs_no_token_or_secret(app, shutter, providers, caplog):
    caplog.set_level(logging.DEBUG)
    alice = shutter.account("alice")
    link(shutter, alice, "twitter")
    link(shutter, alice, "facebook")
    photo_id = ready_photo(app, shutter, alice)
    providers["twitter"].fault("statuses/update", hang=2.5)  # the unknown-outcome path logs too
    for network in NETWORKS:
        share(app, photo_id, network)
    share(app, photo_id, "twitter")
    assert len(providers["twitter"].posts) == len(providers["facebook"].posts) == 1
    token, secret = providers["twitter"].access_token_of("783214")
    secrets_ = [token, secret, providers["facebook"].access_token_of("100004242"), TWITTER_SECRET, FACEBOOK_SECRET]
    assert "oauth_token" in caplog.text  # oauthlib's debug lines were captured, masked
    leaks = [line for line in caplog.text.splitlines() if any(s in line for s in secrets_)]
    assert not leaks, leaks


# -- end to end, through real workers -----------------------------------------------------------
def wait_until(predicate, timeout: float, what: str, workers=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for worker in workers:
            assert worker.alive(), f"a worker died while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_an_upload_is_shared_once_through_a_gevent_io_worker(app, shutter, providers, worker_process,
                                                             oauth_settings):
    alice = shutter.account("alice")
    link(shutter, alice, "twitter")
    link(shutter, alice, "facebook")
    media = worker_process(oauth_settings, queues="media").start()
    io_worker = worker_process(oauth_settings, queues="io", pool="gevent", concurrency=20,
                               extra_env=INSECURE_ENV).start(purge=False)
    providers["twitter"].fault("statuses/update", status=429,
                               headers={"x-rate-limit-reset": str(int(time.time()) + 2)})
    providers["facebook"].fault("me/photos", hang=2.5)  # posted, no answer: the retry finds it
    response = shutter.post("/v1/media/upload", alice, files={"photo": (io.BytesIO(JPEG), "p.jpg")},
                            caption="live", share_to="twitter,facebook")
    assert response.status_code == 202, response.json
    photo_id = int(response.json["data"]["id"].split("_")[0])

    def both_posted():
        rows = [share_row(app, photo_id, n) for n in NETWORKS]
        return all(r is not None and r.status == "posted" for r in rows)

    wait_until(both_posted, 90, "both shares posted", [media, io_worker])
    # the same task again (a duplicate delivery): still one post each
    services(app).celery.send_task("tasks.sharing.share_twitter", args=(photo_id,))
    services(app).celery.send_task("tasks.sharing.share_facebook", args=(photo_id,))
    io_worker.wait_for_log("already_posted", timeout=30, count=3)
    assert len(providers["twitter"].posts) == 1 and len(providers["facebook"].posts) == 1
    assert share_row(app, photo_id, "twitter").attempts >= 2  # the 429, then the post
    with services(app).db.session() as session:
        assert session.get(Photo, photo_id).status == "ready"
