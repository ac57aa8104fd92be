"""Real-time subscriptions (issue 13, items 6 and 7): the handshake, signed deliveries
that the official client's SubscriptionsReactor verifies, retries, disabling, who is
told about what, and callbacks that never reach an internal address.

The callbacks are real HTTP servers on loopback ports (tests/callbacks.py); the app
under test allows 127.0.0.1/32 (SUBSCRIPTION_CALLBACK_ALLOWED_NETWORKS) except where a
test shows the refusal. Photos are made ready in-process (tests/test_feeds.post_photo),
then the notification and the deliveries run in-process as the io worker runs them:
the service's notify, then each promised tasks.realtime.deliver through the Celery
task itself (apply: its retries run at once, one after the other). One test runs the
whole chain in a REAL worker: upload → ready → notify → a failed POST → its retry.

The requests are the official client's (python-instagram 1.3.2, its
create_subscription, list_subscriptions and delete_subscriptions): client_id and
client_secret in the query string, the subscription's fields in a urlencoded body.
Most tests send them through Flask's test client; one drives the client itself against
a real HTTP server (tests/live_server.py; it calls `/v1/subscriptions.json`).
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
from datetime import timedelta

import pytest
from instagram import InstagramAPI, InstagramAPIError
from instagram.subscriptions import SubscriptionsReactor, SubscriptionVerifyError
from sqlalchemy import select, update

import tasks.realtime  # noqa: F401  registers tasks.realtime.* with every Celery app
from app.realtime.callbacks import AddressGuard, CallbackRefused
from app.realtime.subscriptions import DELIVER_TASK, distance_meters
from models import Outbox, Subscription, SubscriptionDelivery, utcnow
from tests.callbacks import CallbackServer, closed_port, ipv6_loopback
from tests.support import Shutter, assert_error
from tests.test_feeds import JPEG, post_photo, services_of
from tests.test_pipeline_faults import wait_until

LOOPBACK = ["127.0.0.1/32"]


@pytest.fixture
def callback():
    with CallbackServer() as server:
        yield server


@pytest.fixture
def app(make_app):
    """Callbacks on 127.0.0.1 allowed; a subscription is disabled after 3 failures in a row."""
    return make_app(subscription_callback_allowed_networks=LOOPBACK, subscription_max_failures=3,
                    subscription_callback_timeout_seconds=2)


@pytest.fixture
def shutter(app) -> Shutter:
    return Shutter(app.test_client())


def credentials(client: dict) -> dict:
    return {"client_id": client["client_id"], "client_secret": client["client_secret"]}


def subscribe(shutter: Shutter, client: dict | None = None, **fields):
    """create_subscription as the official client sends it: credentials and sig in the query."""
    client = client or shutter.app_client()
    query = {**credentials(client), "sig": "ignored-the-secret-is-sent"}
    return shutter.client.post("/v1/subscriptions", query_string=query, data=fields)


def subscribed(shutter: Shutter, client: dict | None = None, **fields) -> dict:
    response = subscribe(shutter, client, **fields)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["meta"] == {"code": 200}
    return response.json["data"]


def listed(shutter: Shutter, client: dict | None = None) -> list[dict]:
    response = shutter.client.get("/v1/subscriptions", query_string=credentials(client or shutter.app_client()))
    assert response.status_code == 200 and response.json["meta"] == {"code": 200}, response.get_data(as_text=True)
    return response.json["data"]


def unsubscribe(shutter: Shutter, client: dict | None = None, **params):
    return shutter.client.delete("/v1/subscriptions",
                                 query_string={**credentials(client or shutter.app_client()), **params})


def other_client(shutter: Shutter, developer: str = "otherdev") -> dict:
    assert shutter.signup(developer).status_code == 201
    response = shutter.register_client(developer)
    assert response.status_code == 201
    return response.json["data"]


class Deliveries:
    """Runs the promised deliveries in-process, each through the Celery task once."""

    def __init__(self, shutter: Shutter) -> None:
        self.services = services_of(shutter)
        self.done: set[int] = set()

    def notify(self, photo_id: int) -> int:
        return self.services.subscriptions.notify(photo_id)

    def promised(self) -> list[Outbox]:
        with self.services.db.session() as session:
            rows = session.scalars(select(Outbox).where(Outbox.kind == DELIVER_TASK).order_by(Outbox.id)).all()
        return [row for row in rows if row.id not in self.done]

    def run(self) -> int:
        task = self.services.celery.tasks[DELIVER_TASK]
        rows = self.promised()
        for row in rows:
            self.done.add(row.id)
            task.apply(kwargs=row.payload).get()  # raises what the last attempt raised
        return len(rows)


def verified(delivery, client: dict) -> list[dict]:
    """The updates of one POST, as the official client's reactor hands them over."""
    assert delivery.headers["Content-Type"] == "application/json"
    updates = []
    reactor = SubscriptionsReactor()
    for kind in ("user", "tag", "location", "geography"):
        reactor.register_callback(kind, updates.append)
    reactor.process(client["client_secret"], delivery.body, delivery.headers["X-Hub-Signature"])
    return updates


def subscription_row(shutter: Shutter, subscription_id: str) -> Subscription | None:
    with services_of(shutter).db.session() as session:
        return session.get(Subscription, int(subscription_id))


# -- the handshake ---------------------------------------------------------------------
def test_a_callback_that_echoes_the_challenge_is_subscribed(shutter, callback):
    data = subscribed(shutter, object="tag", object_id="Cats", aspect="media", verify_token="vt-1",
                      callback_url=callback.url("/hook?app=1"))
    assert data == {"id": data["id"], "type": "subscription", "object": "tag", "object_id": "cats",
                    "aspect": "media", "callback_url": callback.url("/hook?app=1")}
    [handshake] = callback.handshakes
    assert handshake["hub.mode"] == "subscribe" and handshake["hub.verify_token"] == "vt-1"
    assert len(handshake["hub.challenge"]) >= 16 and handshake["app"] == "1"  # its own query is kept
    assert listed(shutter) == [data]
    # Another handshake, another challenge.
    subscribed(shutter, object="tag", object_id="dogs", callback_url=callback.url())
    assert callback.handshakes[1]["hub.challenge"] != handshake["hub.challenge"]
    assert [s["object_id"] for s in listed(shutter)] == ["cats", "dogs"]


@pytest.mark.parametrize("answer", ["wrong", "404", "500", "redirect"])
def test_a_failed_handshake_creates_nothing(shutter, callback, answer):
    callback.handshake = answer
    with CallbackServer() as elsewhere:
        callback.redirect_to = elsewhere.url("/moved")
        response = subscribe(shutter, object="tag", object_id="cats", callback_url=callback.url())
        assert elsewhere.connections == 0  # a redirect is not followed
    meta = assert_error(response, 400, "APISubscriptionError")
    assert "Challenge verification failed" in meta["error_message"]
    assert len(callback.handshakes) == 1
    assert listed(shutter) == []


def test_an_unreachable_callback_creates_nothing(shutter):
    response = subscribe(shutter, object="tag", object_id="cats",
                         callback_url=f"http://127.0.0.1:{closed_port()}/callback")
    assert "Unable to reach" in assert_error(response, 400, "APISubscriptionError")["error_message"]
    assert listed(shutter) == []


# -- authentication and input ------------------------------------------------------------
def test_subscriptions_authenticate_the_client(shutter, callback):
    client = shutter.app_client()
    wrong = {"client_id": client["client_id"], "client_secret": "not-the-secret"}
    for response in (shutter.client.get("/v1/subscriptions", query_string=wrong),
                     shutter.client.post("/v1/subscriptions", query_string=wrong,
                                         data={"object": "tag", "object_id": "x", "callback_url": callback.url()}),
                     shutter.client.delete("/v1/subscriptions", query_string={**wrong, "object": "all"})):
        assert_error(response, 400, "OAuthClientException")
    assert_error(shutter.client.get("/v1/subscriptions"), 400, "OAuthParameterException")
    assert_error(shutter.client.get("/v1/subscriptions", query_string={"client_id": client["client_id"]}),
                 400, "OAuthParameterException")
    assert callback.handshakes == []  # refused before any request to the callback
    # A POST may carry them as form fields instead.
    response = shutter.client.post("/v1/subscriptions", data={
        **credentials(client), "object": "tag", "object_id": "x", "callback_url": callback.url()})
    assert response.status_code == 200, response.json
    # A user's access token is no client credential.
    alice = shutter.account("alice")
    assert_error(shutter.client.get("/v1/subscriptions", query_string={"access_token": alice.token}),
                 400, "OAuthParameterException")


@pytest.mark.parametrize("fields, error_type", [
    ({"object": "photo", "object_id": "x"}, "APIInvalidParametersError"),
    ({"object": "geography", "lat": "48.85", "lng": "2.29", "radius": "5001"}, "APIInvalidParametersError"),
    ({"object": "geography", "lat": "91", "lng": "2.29"}, "APIInvalidParametersError"),
    ({"object": "geography", "lng": "2.29", "radius": "100"}, "APIInvalidParametersError"),
    ({"object": "tag"}, "APIInvalidParametersError"),
    ({"object": "tag", "object_id": "not a tag!"}, "APIInvalidParametersError"),
    ({"object": "tag", "object_id": "cats", "aspect": "likes"}, "APIInvalidParametersError"),
    ({"object": "location", "object_id": "abc"}, "APIInvalidParametersError"),
    ({"object": "user", "object_id": "1x"}, "APIInvalidParametersError"),
])
def test_bad_input_is_refused_before_the_handshake(shutter, callback, fields, error_type):
    assert_error(subscribe(shutter, callback_url=callback.url(), **fields), 400, error_type)
    assert callback.handshakes == []


def test_a_missing_or_odd_callback_url_is_refused(shutter, callback):
    for url in (None, "", "ftp://127.0.0.1/x", "not a url", "http://", "javascript:alert(1)"):
        fields = {"object": "tag", "object_id": "cats"} | ({} if url is None else {"callback_url": url})
        assert_error(subscribe(shutter, **fields), 400, "APIInvalidParametersError")
    assert_error(subscribe(shutter, object="location", object_id="12345", callback_url=callback.url()),
                 404, "APINotFoundError")
    assert callback.handshakes == []


def test_geography_subscriptions_are_their_own_object_id(shutter, callback):
    data = subscribed(shutter, object="geography", lat="48.8584", lng="2.2945", radius="5000",
                      callback_url=callback.url())
    assert data["object_id"] == data["id"]  # v1's geography id: /geographies/{id}/media/recent
    assert (data["lat"], data["lng"], data["radius"]) == (48.8584, 2.2945, 5000)
    default = subscribed(shutter, object="geography", lat="0", lng="0", callback_url=callback.url())
    assert default["radius"] == 1000


# -- delete --------------------------------------------------------------------------------
def test_delete_by_id_by_object_and_all(shutter, callback):
    alice = shutter.account("alice")
    mine = [subscribed(shutter, object="tag", object_id="a", callback_url=callback.url()),
            subscribed(shutter, object="tag", object_id="b", callback_url=callback.url()),
            subscribed(shutter, object="user", callback_url=callback.url()),
            subscribed(shutter, object="user", object_id=alice.id, callback_url=callback.url()),
            subscribed(shutter, object="geography", lat="1", lng="1", callback_url=callback.url())]
    other = other_client(shutter)
    theirs = subscribed(shutter, other, object="tag", object_id="a", callback_url=callback.url())

    # Another client's subscription is not this client's to delete.
    assert_error(unsubscribe(shutter, id=theirs["id"]), 404, "APINotFoundError")
    assert_error(unsubscribe(shutter), 400, "APIInvalidParametersError")
    assert_error(unsubscribe(shutter, object="photo"), 400, "APIInvalidParametersError")
    assert_error(unsubscribe(shutter, id="abc"), 400, "APIInvalidParametersError")

    response = unsubscribe(shutter, id=mine[0]["id"])
    assert response.status_code == 200 and response.json == {"meta": {"code": 200}, "data": None}
    assert [s["id"] for s in listed(shutter)] == [s["id"] for s in mine[1:]]
    assert_error(unsubscribe(shutter, id=mine[0]["id"]), 404, "APINotFoundError")  # gone already
    assert unsubscribe(shutter, object="user").status_code == 200
    assert [s["id"] for s in listed(shutter)] == [mine[1]["id"], mine[4]["id"]]
    assert unsubscribe(shutter, object="all").status_code == 200
    assert listed(shutter) == []
    assert listed(shutter, other) == [theirs]


# -- deliveries ----------------------------------------------------------------------------
def test_a_new_photo_is_posted_signed_once_per_callback(shutter, callback):
    client = shutter.app_client()
    alice = shutter.account("alice")
    located = post_photo(shutter, alice, lat="48.8584", lng="2.2945", location_name="Eiffel Tower")
    location_id = shutter.get(f"/v1/media/{located}", alice).json["data"]["location"]["id"]
    deliveries = Deliveries(shutter)
    deliveries.notify(located)
    deliveries.run()
    callback.deliveries.clear()  # no subscription yet: nothing was sent

    subs = {kind: subscribed(shutter, callback_url=callback.url("/one"), **fields) for kind, fields in {
        "user": {"object": "user"},
        "tag": {"object": "tag", "object_id": "cats"},
        "location": {"object": "location", "object_id": location_id},
        "geography": {"object": "geography", "lat": "48.8600", "lng": "2.2950", "radius": "500"},
    }.items()}
    elsewhere = subscribed(shutter, object="tag", object_id="cats", callback_url=callback.url("/two"))
    far = subscribed(shutter, object="geography", lat="48.80", lng="2.29", radius="5000",
                     callback_url=callback.url("/two"))  # ~6 km away: not told
    subscribed(shutter, object="tag", object_id="dogs", callback_url=callback.url("/two"))

    photo = post_photo(shutter, alice, caption="#cats at #paris", lat="48.8584", lng="2.2945",
                       location_name="Eiffel Tower")
    assert deliveries.notify(photo) == 5
    assert deliveries.run() == 2  # one POST per callback URL
    by_path = {d.path: d for d in callback.deliveries}
    assert set(by_path) == {"/one", "/two"}

    updates = verified(by_path["/one"], client)
    media_id = f"{photo}_{alice.id}"
    assert sorted(updates, key=lambda u: u["object"]) == sorted([
        {"object": kind, "object_id": alice.id if kind == "user" else sub["object_id"], "aspect": "media",
         "changed_aspect": "media", "time": updates[0]["time"], "subscription_id": sub["id"],
         "data": {"media_id": media_id}} for kind, sub in subs.items()], key=lambda u: u["object"])
    assert subs["geography"]["object_id"] == subs["geography"]["id"]
    assert [u["subscription_id"] for u in verified(by_path["/two"], client)] == [elsewhere["id"]]
    assert far["id"] not in by_path["/two"].body

    # The signature is keyed by the client's secret: the reactor refuses any other.
    with pytest.raises(SubscriptionVerifyError):
        SubscriptionsReactor().process("another-secret", by_path["/one"].body, by_path["/one"].headers["X-Hub-Signature"])
    assert json.loads(by_path["/one"].body)  # a JSON array, as the reactor iterates it

    # A notification run again (a redelivered task) announces nothing twice.
    assert deliveries.notify(photo) == 0
    assert deliveries.run() == 0
    assert len(callback.deliveries) == 2


def test_the_sweeper_purges_old_claims(shutter, callback):
    alice = shutter.account("alice")
    subscribed(shutter, object="user", callback_url=callback.url())
    deliveries = Deliveries(shutter)
    old, recent = post_photo(shutter, alice), post_photo(shutter, alice)
    assert deliveries.notify(old) == 1 and deliveries.notify(recent) == 1
    services = services_of(shutter)
    with services.db.session() as session:
        session.execute(update(SubscriptionDelivery).where(SubscriptionDelivery.photo_id == old)
                        .values(created_at=utcnow() - timedelta(days=8)))
        session.commit()
    assert services.subscriptions.purge_claims(timedelta(days=7), batch=1) == 1
    with services.db.session() as session:
        assert session.scalars(select(SubscriptionDelivery.photo_id)).all() == [recent]


def test_a_user_subscription_covers_only_the_clients_own_users(shutter, callback):
    client = shutter.app_client()
    other = other_client(shutter)
    alice = shutter.account("alice")  # authorized this client
    bob = shutter.account("bob", client=other)  # never did
    assert_error(subscribe(shutter, object="user", object_id=bob.id, callback_url=callback.url()),
                 400, "APINotAllowedError")
    everyone = subscribed(shutter, object="user", callback_url=callback.url("/all"))
    only_alice = subscribed(shutter, object="user", object_id=alice.id, callback_url=callback.url("/alice"))
    deliveries = Deliveries(shutter)

    deliveries.notify(post_photo(shutter, bob))
    assert deliveries.run() == 0 and callback.deliveries == []

    photo = post_photo(shutter, alice)
    deliveries.notify(photo)
    deliveries.run()
    assert sorted(d.path for d in callback.deliveries) == ["/alice", "/all"]
    for delivery in callback.deliveries:
        [update] = verified(delivery, client)
        assert update["object_id"] == alice.id and update["data"]["media_id"] == f"{photo}_{alice.id}"
        assert update["subscription_id"] in {everyone["id"], only_alice["id"]}

    # Once alice revokes the client's token, her photos are no longer its business.
    carol = shutter.account("carol")
    assert shutter.client.post("/oauth/revoke", data={"token": alice.token, **credentials(client)}).status_code == 200
    callback.deliveries.clear()
    deliveries.notify(post_photo(shutter, carol))  # carol authorized it: told
    deliveries.run()
    [delivery] = callback.deliveries
    assert delivery.path == "/all" and verified(delivery, client)[0]["object_id"] == carol.id


def test_a_private_photo_is_announced_only_where_it_may_be_seen(shutter, callback):
    client = shutter.app_client()
    theirs = other_client(shutter)
    carol = shutter.account("carol", client=theirs, private=True)  # authorized the other client only
    subscribed(shutter, object="tag", object_id="cats", callback_url=callback.url("/mine"))
    subscribed(shutter, theirs, object="tag", object_id="cats", callback_url=callback.url("/theirs"))
    deliveries = Deliveries(shutter)

    first = post_photo(shutter, carol, caption="#cats")
    deliveries.notify(first)
    deliveries.run()
    # Her own client is told; this one, through which nobody may see her photos, is not.
    assert [d.path for d in callback.deliveries] == ["/theirs"]
    assert verified(callback.deliveries[0], theirs)[0]["data"]["media_id"] == f"{first}_{carol.id}"

    # dave authorized this client; once carol approves him, this client may see her photos.
    dave = shutter.account("dave")
    assert shutter.relate(dave, carol, "follow").status_code == 200
    deliveries.notify(post_photo(shutter, carol, caption="#cats"))
    deliveries.run()
    assert [d.path for d in callback.deliveries] == ["/theirs", "/theirs"]  # a request is no follow
    assert shutter.relate(carol, dave, "approve").status_code == 200
    third = post_photo(shutter, carol, caption="#cats")
    deliveries.notify(third)
    deliveries.run()
    mine = [d for d in callback.deliveries if d.path == "/mine"]
    assert len(mine) == 1 and verified(mine[0], client)[0]["data"]["media_id"] == f"{third}_{carol.id}"

    # A block ends it again.
    assert shutter.relate(carol, dave, "block").status_code == 200
    deliveries.notify(post_photo(shutter, carol, caption="#cats"))
    deliveries.run()
    assert len([d for d in callback.deliveries if d.path == "/mine"]) == 1


def test_a_failing_callback_gets_the_delivery_once_it_recovers(shutter, callback):
    client = shutter.app_client()
    alice = shutter.account("alice")
    sub = subscribed(shutter, object="user", callback_url=callback.url())
    callback.post_statuses = [500, 503]  # two failures (fewer than the 3 that disable), then 200
    deliveries = Deliveries(shutter)
    photo = post_photo(shutter, alice)
    deliveries.notify(photo)
    deliveries.run()
    assert len(callback.deliveries) == 3  # the task retried twice
    bodies = {d.body for d in callback.deliveries}
    assert len(bodies) == 1  # the same batch each time
    [update] = verified(callback.deliveries[-1], client)
    assert update["data"]["media_id"] == f"{photo}_{alice.id}"
    row = subscription_row(shutter, sub["id"])
    assert row.failures == 0 and row.disabled_at is None and row.last_error is None  # reset by the success
    assert listed(shutter) == [sub]


def test_a_callback_that_keeps_failing_is_disabled(shutter, callback):
    alice = shutter.account("alice")
    sub = subscribed(shutter, object="user", callback_url=callback.url())
    kept = subscribed(shutter, object="tag", object_id="dogs", callback_url=callback.url("/fine"))
    callback.post_statuses = [500] * 10
    deliveries = Deliveries(shutter)
    deliveries.notify(post_photo(shutter, alice))
    deliveries.run()
    assert len(callback.deliveries) == 3  # SUBSCRIPTION_MAX_FAILURES: then no more retries
    row = subscription_row(shutter, sub["id"])
    assert row.disabled_at is not None and row.failures == 3 and row.last_error == "HTTP 500"
    assert listed(shutter) == [kept]  # the client sees it gone
    # No longer matched.
    assert deliveries.notify(post_photo(shutter, alice)) == 0
    assert len(callback.deliveries) == 3


# -- SSRF ------------------------------------------------------------------------------------
@pytest.fixture
def guarded(make_app) -> Shutter:
    """The default: no callback network allowed."""
    return Shutter(make_app(subscription_callback_timeout_seconds=1).test_client())


def test_callbacks_to_internal_addresses_are_refused_before_connecting(guarded, callback):
    urls = [callback.url(), callback.url(host="localhost"), f"http://0.0.0.0:{callback.port}/callback",
            f"http://2130706433:{callback.port}/callback",  # 127.0.0.1 as one number
            f"http://[::ffff:7f00:1]:{callback.port}/callback"]  # 127.0.0.1, IPv4-mapped
    for url in urls:
        response = subscribe(guarded, object="tag", object_id="cats", callback_url=url)
        assert_error(response, 400, "APISubscriptionError")
    assert callback.connections == 0 and callback.handshakes == []
    if ipv6_loopback():
        with CallbackServer("::1") as v6:
            assert_error(subscribe(guarded, object="tag", object_id="cats", callback_url=v6.url()),
                         400, "APISubscriptionError")
            assert v6.connections == 0
    # Nothing listens there, and nothing is tried: the guard refuses them before a connect.
    for url in ("http://10.0.0.1/callback", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x",
                "http://224.0.0.1/x", "http://100.64.0.1/x"):
        response = subscribe(guarded, object="tag", object_id="cats", callback_url=url)
        meta = assert_error(response, 400, "APISubscriptionError")
        assert "may not reach" in meta["error_message"]
    assert listed(guarded) == []


def test_the_address_guard_checks_what_a_name_resolves_to():
    refuse = AddressGuard([])
    for host in ("127.0.0.1", "localhost", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                 "0.0.0.0", "::", "::ffff:10.0.0.1", "fc00::1", "fe80::1", "224.0.0.251", "ff02::1",
                 "100.64.0.1", "240.0.0.1", "255.255.255.255", "2130706433", "0x7f000001"):
        with pytest.raises(CallbackRefused):
            refuse.resolve(host, 80)
    assert refuse.resolve("93.184.216.34", 80) == "93.184.216.34"  # a literal global address: no DNS
    assert refuse.resolve("2606:4700::1111", 443) == "2606:4700::1111"
    allow = AddressGuard(["127.0.0.1/32", "10.1.0.0/16"])
    assert allow.resolve("127.0.0.1", 80) == "127.0.0.1"
    assert allow.resolve("10.1.2.3", 80) == "10.1.2.3"
    for host in ("127.0.0.2", "10.2.0.1", "::1"):
        with pytest.raises(CallbackRefused):
            allow.resolve(host, 80)
    with pytest.raises(ValueError):
        AddressGuard(["not-a-network"])


def test_each_delivery_is_checked_again(shutter, make_app, callback):
    """A subscription made while loopback was allowed: once it is not, its delivery is refused
    without a connection, and counted as a failure."""
    alice = shutter.account("alice")
    sub = subscribed(shutter, object="user", callback_url=callback.url())
    connections = callback.connections
    photo = post_photo(shutter, alice)
    strict = make_app(subscription_max_failures=3)  # same database, no network allowed
    services = strict.extensions["shutter"]
    services.subscriptions.notify(photo)
    with services.db.session() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == DELIVER_TASK)).all()
    assert services.subscriptions.deliver(**row.payload) is False  # to be retried
    assert callback.connections == connections and callback.deliveries == []
    failed = subscription_row(shutter, sub["id"])
    assert failed.failures == 1 and "may not reach" in failed.last_error


def test_a_redirect_from_the_callback_is_not_followed(shutter, callback):
    alice = shutter.account("alice")
    subscribed(shutter, object="user", callback_url=callback.url())
    with CallbackServer() as elsewhere:
        callback.redirect_to = elsewhere.url("/moved")
        callback.post_statuses = [307, 307, 307]
        deliveries = Deliveries(shutter)
        deliveries.notify(post_photo(shutter, alice))
        deliveries.run()
        assert len(callback.deliveries) == 3 and elsewhere.connections == 0
    assert listed(shutter) == []  # three failures: disabled


def test_distances_across_the_antimeridian_and_near_the_poles():
    assert distance_meters(0, 179.99, 0, -179.99) == pytest.approx(2224, rel=0.01)
    assert distance_meters(89.99, 0, 89.99, 180) == pytest.approx(2224, rel=0.01)
    assert distance_meters(48.8584, 2.2945, 48.8584, 2.2945) == 0


# -- the official client --------------------------------------------------------------------
def instagram_api(host: str, client: dict, secret: str | None = None) -> InstagramAPI:
    api = InstagramAPI(client_id=client["client_id"], client_secret=secret or client["client_secret"])
    api.host, api.protocol = host, "http"
    return api


def test_the_official_client_creates_lists_and_deletes_subscriptions(shutter, live_server, callback):
    client = shutter.app_client()
    api = instagram_api(live_server.host, client)
    created = api.create_subscription(object="tag", object_id="cats", aspect="media", verify_token="vt",
                                      callback_url=callback.url())
    assert created["meta"] == {"code": 200} and created["data"]["object_id"] == "cats"
    assert callback.handshakes[0]["hub.verify_token"] == "vt"
    area = api.create_subscription(object="geography", aspect="media", lat=48.85, lng=2.29, radius=1000,
                                   callback_url=callback.url())["data"]
    assert (area["lat"], area["lng"], area["radius"]) == (48.85, 2.29, 1000)
    assert [s["id"] for s in api.list_subscriptions()["data"]] == [created["data"]["id"], area["id"]]
    assert api.delete_subscriptions(id=created["data"]["id"])["meta"] == {"code": 200}
    assert [s["id"] for s in api.list_subscriptions()["data"]] == [area["id"]]
    api.delete_subscriptions(object="all")
    assert api.list_subscriptions()["data"] == []
    with pytest.raises(InstagramAPIError) as refused:
        instagram_api(live_server.host, client, secret="wrong-secret").list_subscriptions()
    assert refused.value.error_type == "OAuthClientException"
    with pytest.raises(InstagramAPIError) as failed:
        callback.handshake = "wrong"
        api.create_subscription(object="tag", object_id="dogs", aspect="media", callback_url=callback.url())
    assert failed.value.error_type == "APISubscriptionError"


# -- end to end, in a real worker ------------------------------------------------------------
def test_an_upload_reaches_the_callback_through_a_real_worker(shutter, settings, worker_process, callback):
    client = shutter.app_client()
    alice = shutter.account("alice")
    sub = subscribed(shutter, object="user", callback_url=callback.url())
    worker = worker_process(dataclasses.replace(
        settings, subscription_callback_allowed_networks=LOOPBACK, subscription_retry_backoff_seconds=1))
    worker.start()
    callback.post_statuses = [503]  # the first POST fails: the retried one arrives
    response = shutter.post("/v1/media/upload", alice, files={"photo": (io.BytesIO(JPEG), "p.jpg")},
                            caption="#live")
    assert response.status_code == 202, response.json
    media_id = response.json["data"]["id"]
    wait_until(lambda: len(callback.deliveries) >= 2, timeout=60, what="the retried delivery", worker=worker)
    [update] = verified(callback.deliveries[1], client)
    assert update == {**update, "object": "user", "object_id": alice.id, "subscription_id": sub["id"],
                      "data": {"media_id": media_id}}
    assert callback.deliveries[0].body == callback.deliveries[1].body
    # The worker resets the count after the POST answered: the callback server may see it first.
    wait_until(lambda: subscription_row(shutter, sub["id"]).failures == 0, timeout=10,
               what="the failure count reset after the delivered retry", worker=worker)


def test_a_subscription_logs_neither_the_client_secret_nor_the_verify_token(shutter, callback, caplog):
    caplog.set_level(logging.DEBUG)
    client = shutter.app_client()
    subscribed(shutter, client, object="tag", object_id="cats", callback_url=callback.url(),
               verify_token="vt-not-for-logs")
    # what the access log writes for the client's call (werkzeug's, gunicorn's)
    logging.getLogger("gunicorn.access").info(
        "POST /v1/subscriptions?client_id=%s&client_secret=%s", client["client_id"], client["client_secret"])
    assert callback.handshakes[0]["hub.verify_token"] == "vt-not-for-logs"
    assert "[redacted]" in caplog.text
    leaks = [line for line in caplog.text.splitlines() if client["client_secret"] in line or "vt-not-for-logs" in line]
    assert not leaks, leaks
