"""Issue 14, items 2 and 3: push over APNs' HTTP/2 provider API, against the local
provider of tests/apns_server.py (TLS, HTTP/2, verified ES256 provider tokens); both stacks.

The provider tests send through Shutter's own ApnsProvider and the process's one
HTTP/2 client (app/services.py), with the provider token's clock given to it. The
end-to-end tests run a real Celery worker on the io queue with a gevent pool, as
production does.
"""
from __future__ import annotations

import dataclasses
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from app.push.apns import (BAD_TOKEN, EXPIRED_TOKEN, MIN_AGE, PROVIDER_ERROR, REFRESH_AFTER, REJECTED, SENT,
                           THROTTLED, UNREGISTERED, ApnsProvider, Notification, ProviderToken)
from app.push.service import GONE, NO_DEVICE, QUEUED
from models import Activity, Device
from tests import images
from tests.apns_server import KEY_ID, TEAM_ID, TOPIC
from tests.support import assert_error

TOKEN_A = "a1" * 32
TOKEN_B = "b2" * 32


class Clock:
    """The provider token's clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def push_settings(settings, apns_server):
    return apns_server.configure(settings, apns_retry_backoff_seconds=0.05, apns_retry_backoff_max_seconds=0.2)


@pytest.fixture
def push_app(make_app, push_settings):
    return make_app(**{f.name: getattr(push_settings, f.name) for f in dataclasses.fields(push_settings)})


@pytest.fixture
def push(push_app):
    return push_app.extensions["shutter"]


@pytest.fixture
def pshutter(push_app):
    from tests.support import Shutter

    return Shutter(push_app.test_client())


def provider_with(services, clock) -> ApnsProvider:
    """Shutter's provider on the process's HTTP/2 client, its token on `clock`."""
    with open(services.settings.apns_key_file) as key_file:
        token = ProviderToken(KEY_ID, TEAM_ID, key_file.read(), clock=clock)
    return ApnsProvider(services.apns_http, token, services.apns.hosts, services.apns.port)


def note(token: str = TOKEN_A, environment: str = "production", **changes) -> Notification:
    fields = dict(device_token=token, environment=environment, topic=TOPIC,
                  payload={"aps": {"alert": "alice liked your photo.", "badge": 1, "sound": "default"}},
                  expiration=int(time.time()) + 3600, collapse_id="photo-1")
    fields.update(changes)
    return Notification(**fields)


# --- the provider's answers ------------------------------------------------------------


def test_a_push_carries_apple_s_headers_and_a_verified_token(push, apns_server):
    answer = push.apns.send(note())
    assert answer.result == SENT and answer.status == 200
    [received] = apns_server.received
    assert received.status == 200 and received.device_token == TOKEN_A
    assert received.claims["iss"] == TEAM_ID
    headers = received.headers
    assert headers["apns-topic"] == TOPIC and headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10" and headers["apns-collapse-id"] == "photo-1"
    assert abs(int(headers["apns-expiration"]) - (time.time() + 3600)) < 5
    assert received.payload["aps"] == {"alert": "alice liked your photo.", "badge": 1, "sound": "default"}


def test_the_server_refuses_what_apple_would(push, apns_server):
    # The local provider checks: a wrong topic, a payload without aps, a foreign key.
    assert push.apns.send(note(topic="com.example.other")).reason == "BadTopic"
    assert push.apns.send(note(payload={"alert": "x"})).reason == "BadPayload"
    assert push.apns.send(note(payload={"aps": {"alert": "x", "badge": -1}})).reason == "BadPayload"
    assert push.apns.send(note(topic="com.example.other")).result == REJECTED
    foreign = ProviderToken(KEY_ID, TEAM_ID, _other_key())
    answer = ApnsProvider(push.apns_http, foreign, push.apns.hosts, push.apns.port).send(note())
    assert (answer.status, answer.reason) == (403, "InvalidProviderToken")


def _other_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.mark.parametrize("status, reason, result", [
    (410, "Unregistered", UNREGISTERED),
    (400, "BadDeviceToken", BAD_TOKEN),
    (429, "TooManyRequests", THROTTLED),
    (500, "InternalServerError", PROVIDER_ERROR),
    (503, "ServiceUnavailable", PROVIDER_ERROR),
    (413, "PayloadTooLarge", REJECTED),
])
def test_each_answer_has_its_result(push, apns_server, status, reason, result):
    apns_server.answer(status, reason, times=1)
    answer = push.apns.send(note())
    assert (answer.result, answer.status, answer.reason) == (result, status, reason)
    if status == 410:
        assert abs(answer.timestamp_ms / 1000 - time.time()) < 5
    assert push.apns.send(note()).result == SENT  # only the next one was scripted


def test_no_answer_is_a_provider_error(push, apns_server):
    apns_server.stop()
    assert push.apns.send(note()).result == PROVIDER_ERROR


def test_the_provider_token_is_cached_and_refreshed_after_its_age_limit(push, apns_server):
    real = time.time()
    clock = Clock(real - 55 * 60)  # its first token is 55 minutes old by the server's clock: still valid
    provider = provider_with(push, clock)
    assert provider.send(note()).result == SENT
    clock.now = real - 55 * 60 + REFRESH_AFTER - 60  # 49 minutes on: the same token
    assert all(provider.send(note()).result == SENT for _ in range(3))
    assert provider.token.signed == 1 and len(apns_server.provider_tokens) == 1
    clock.now = real  # 55 minutes on: past REFRESH_AFTER, a new one, which the server takes (> 20 min)
    assert provider.send(note()).result == SENT
    assert provider.token.signed == 2
    assert [iat for _token, iat in apns_server.provider_tokens] == [int(real - 55 * 60), int(real)]
    assert {r.status for r in apns_server.received} == {200}


def test_expired_provider_token_refreshes_once_and_retries(push, apns_server):
    real = time.time()
    clock = Clock(real - 30 * 60)
    provider = provider_with(push, clock)
    assert provider.send(note()).result == SENT
    clock.now = real  # 30 minutes old: past MIN_AGE, so a refused token may be replaced
    apns_server.answer(403, "ExpiredProviderToken", times=1)
    assert provider.send(note()).result == SENT
    assert provider.token.signed == 2
    refused, retried = apns_server.received[-2:]
    assert (refused.status, refused.reason, retried.status) == (403, "ExpiredProviderToken", 200)
    assert refused.provider_token != retried.provider_token
    # Refused again and again: exactly one new token and one retry per push, then the result.
    clock.now = real + MIN_AGE + 60
    apns_server.answer(403, "ExpiredProviderToken", times=5)
    before = len(apns_server.received)
    assert provider.send(note()).result == EXPIRED_TOKEN
    assert len(apns_server.received) == before + 2 and provider.token.signed == 3


def test_a_young_token_refused_as_expired_is_not_replaced(push, apns_server):
    provider = provider_with(push, Clock(time.time()))
    assert provider.send(note()).result == SENT
    apns_server.answer(403, "ExpiredProviderToken", times=1)
    # Younger than 20 minutes: a new one would be refused as too frequent (a clock is off).
    assert provider.send(note()).result == EXPIRED_TOKEN
    assert provider.token.signed == 1 and len(apns_server.received) == 2


def test_pushes_share_one_http2_connection(push, apns_server):
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: push.apns.send(note(collapse_id=f"photo-{i}")).result, range(200)))
    assert results == [SENT] * 200
    assert apns_server.connections == 1
    assert len({r.connection for r in apns_server.received}) == 1


def test_sandbox_devices_go_to_the_sandbox_host(make_app, apns_server, push_settings):
    services = make_app(**{**dataclasses.asdict(push_settings), "apns_sandbox_host": "localhost"}).extensions["shutter"]
    assert services.apns.send(note(environment="sandbox")).result == SENT
    assert services.apns.send(note()).result == SENT
    sandbox, production = apns_server.received
    assert sandbox.headers[":authority"].startswith("localhost:")
    assert production.headers[":authority"].startswith("127.0.0.1:")


# --- the service: cleanup, expiration, preferences, badges ---------------------------------


def register(shutter, account, token: str = TOKEN_A, **fields) -> None:
    assert shutter.post("/v1/users/self/devices", account, token=token, **fields).status_code == 201


def device_tokens(services) -> set[str]:
    with services.db.session() as session:
        return set(session.scalars(select(Device.token)))


@pytest.mark.parametrize("status, reason", [(410, "Unregistered"), (400, "BadDeviceToken")])
def test_a_device_apns_refuses_for_good_is_removed(push, pshutter, apns_server, status, reason):
    alice = pshutter.account("alice")
    register(pshutter, alice, TOKEN_A)
    register(pshutter, alice, TOKEN_B)
    apns_server.answer(status, reason, token=TOKEN_A)
    assert push.push.deliver(note(TOKEN_A).as_dict(), time.time()) in (UNREGISTERED, BAD_TOKEN)
    assert push.push.deliver(note(TOKEN_B).as_dict(), time.time()) == SENT
    assert device_tokens(push) == {TOKEN_B}


def test_a_device_registered_again_after_apns_gave_it_up_stays(push, pshutter, apns_server):
    alice = pshutter.account("alice")
    register(pshutter, alice, TOKEN_A)
    # APNs says the token went invalid an hour ago; the app registered it since.
    apns_server.answer(410, "Unregistered", token=TOKEN_A, timestamp_ms=int((time.time() - 3600) * 1000))
    assert push.push.deliver(note(TOKEN_A).as_dict(), time.time()) == UNREGISTERED
    assert device_tokens(push) == {TOKEN_A}


def test_retries_stop_at_the_expiration_and_when_they_run_out(push):
    service = push.push
    later = int(time.time()) + 3600
    delays = [service.retry_delay(THROTTLED, n, later) for n in range(service.max_retries)]
    assert all(d is not None and 0 <= d <= service.retry_backoff_max_seconds for d in delays)
    assert service.retry_delay(THROTTLED, service.max_retries, later) is None
    assert service.retry_delay(PROVIDER_ERROR, 0, int(time.time())) is None  # past its apns-expiration
    assert service.retry_delay(SENT, 0, later) is None and service.retry_delay(BAD_TOKEN, 0, later) is None


def photo_of(shutter, app, account, caption: str = "") -> str:
    from tests.test_media_api import process, uploaded

    media = uploaded(shutter, account, images.jpeg(320, 240), caption=caption)
    process(app, media["id"])
    return media["id"]


def activity_ids(services, type_: str) -> list[int]:
    with services.db.session() as session:
        return list(session.scalars(select(Activity.id).where(Activity.type == type_).order_by(Activity.id)))


def test_notify_builds_texts_badges_and_collapse_ids(push, push_app, pshutter, apns_server):
    """The push tasks the API published, run here in-process as the io worker would."""
    alice, bob = pshutter.account("alice"), pshutter.account("bob")
    register(pshutter, alice)
    media_id = photo_of(pshutter, push_app, alice)
    assert pshutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert pshutter.post(f"/v1/media/{media_id}/comments", bob, text="nice!").status_code == 200
    # The photo's owner named in a comment gets the comment, not a second push.
    assert pshutter.post(f"/v1/media/{media_id}/comments", bob, text="look @alice").status_code == 200
    results, sent = run_push_tasks(push)
    assert results == [QUEUED] * 3
    assert [p["aps"]["alert"] for p in sent] == [
        "bob liked your photo.", "bob commented: nice!", "bob commented: look @alice"]
    assert [p["aps"]["badge"] for p in sent] == [3, 3, 3]  # the unseen activity when they were made
    photo = media_id.split("_")[0]
    assert {r.headers["apns-collapse-id"] for r in apns_server.received} == {f"photo-{photo}"}
    expiration = time.time() + push.settings.apns_expiration_seconds  # a day
    assert all(abs(int(r.headers["apns-expiration"]) - expiration) < 30 for r in apns_server.received)
    assert sent[0]["shutter"] == {"type": "like", "activity_id": str(activity_ids(push, "like")[0]),
                                  "user_id": bob.id, "media_id": photo}
    # Reading the activity feed resets the badge.
    assert pshutter.get("/v1/users/self/activity", alice).status_code == 200
    assert pshutter.relate(bob, alice, "follow").status_code == 200
    _results, [followed] = run_push_tasks(push)
    assert followed["aps"] == {"alert": "bob started following you.", "badge": 1, "sound": "default"}
    assert "apns-collapse-id" not in apns_server.received[-1].headers
    # Run twice (a redelivered task): pushed once.
    assert push.push.notify(activity_ids(push, "follow"), []) == ([GONE], [])


def test_mentions_requests_and_approvals(push, push_app, pshutter, apns_server):
    alice, bob, carol = pshutter.account("alice", private=True), pshutter.account("bob"), pshutter.account("carol")
    register(pshutter, alice, TOKEN_A)
    register(pshutter, bob, TOKEN_B)
    register(pshutter, carol, "c3" * 32)
    run_push_tasks(push)
    assert pshutter.relate(bob, alice, "follow").status_code == 200
    _results, [requested] = run_push_tasks(push)
    assert requested["aps"]["alert"] == "bob requested to follow you."
    assert pshutter.relate(alice, bob, "approve").status_code == 200
    # The approval tells bob; alice, who approved, is not told that bob follows her.
    _results, [accepted] = run_push_tasks(push)
    assert accepted["aps"]["alert"] == "alice accepted your follow request."
    assert apns_server.received[-1].device_token == TOKEN_B
    media_id = photo_of(pshutter, push_app, bob, caption="with @carol")
    _results, [mentioned] = run_push_tasks(push)
    assert mentioned["aps"]["alert"] == "bob mentioned you in a photo: with @carol"
    assert pshutter.post(f"/v1/media/{media_id}/comments", alice, text="hi @carol").status_code == 200
    _results, pushed = run_push_tasks(push)
    assert [p["aps"]["alert"] for p in pushed] == ["alice commented: hi @carol",
                                                   "alice mentioned you in a comment: hi @carol"]
    assert [r.device_token for r in apns_server.received[-2:]] == [TOKEN_B, "c3" * 32]


def test_a_kind_switched_off_sends_nothing(push, push_app, pshutter, apns_server):
    alice, bob = pshutter.account("alice"), pshutter.account("bob")
    register(pshutter, alice)
    assert pshutter.post("/v1/users/self/notifications", alice, like="false").status_code == 200
    media_id = photo_of(pshutter, push_app, alice)
    assert pshutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert run_push_tasks(push) == (["off_by_preference"], [])
    assert pshutter.post(f"/v1/media/{media_id}/comments", bob, text="nice!").status_code == 200
    _results, sent = run_push_tasks(push)
    assert [p["aps"]["alert"] for p in sent] == ["bob commented: nice!"]
    assert len(apns_server.received) == 1
    # No device: nothing to send.
    assert pshutter.relate(alice, bob, "follow").status_code == 200
    assert run_push_tasks(push) == ([NO_DEVICE], [])


def _queued(services) -> list[tuple[str, dict]]:
    """The push tasks waiting on the io queue (taken off it): (name, kwargs)."""
    messages = []
    with services.celery.connection_for_read() as connection:
        queue = connection.SimpleQueue("io", no_ack=True)
        while True:
            try:
                message = queue.get(block=False)  # published before the request returned
            except queue.Empty:
                break
            messages.append((message.headers["task"], message.decode()[1]))
        queue.close()
    return messages


def run_push_tasks(services) -> tuple[list[str], list[dict]]:
    """Run what the API published (notify, then its delivers) in this process: notify's
    results, and the payloads delivered (each answered 200)."""
    results, payloads = [], []
    while messages := _queued(services):
        for name, kwargs in messages:
            if name == "tasks.push.notify":
                done, later = services.push.notify(**kwargs)
                assert later == []
                results += done
            elif name == "tasks.push.deliver":
                assert services.push.deliver(**kwargs) == SENT
                payloads.append(kwargs["notification"]["payload"])
    return results, payloads


# --- end to end: a real worker on the io queue, gevent pool ------------------------------------


@pytest.fixture
def io_worker(worker_process, push_settings):
    return worker_process(push_settings, queues="io", pool="gevent", concurrency=50).start()


def test_activity_reaches_the_device_through_the_io_worker(io_worker, push_app, pshutter, apns_server):
    alice, bob = pshutter.account("alice"), pshutter.account("bob")
    register(pshutter, alice)
    register(pshutter, alice, TOKEN_B, environment="sandbox")
    media_id = photo_of(pshutter, push_app, alice)
    assert pshutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    got = apns_server.wait_for(2)
    assert {r.device_token for r in got} == {TOKEN_A, TOKEN_B}
    assert {r.payload["aps"]["alert"] for r in got} == {"bob liked your photo."}
    assert apns_server.connections == 1  # both hosts are 127.0.0.1 here: one origin, one connection


def test_throttled_and_failed_pushes_are_retried(io_worker, push_app, pshutter, apns_server):
    alice, bob = pshutter.account("alice"), pshutter.account("bob")
    register(pshutter, alice)
    apns_server.answer(429, "TooManyRequests", times=2)
    apns_server.answer(503, "ServiceUnavailable", times=1)
    assert pshutter.relate(bob, alice, "follow").status_code == 200
    apns_server.wait_for(1)
    assert [r.status for r in apns_server.received] == [429, 429, 503, 200]
    assert device_tokens(push_app.extensions["shutter"]) == {TOKEN_A}


def test_unregistered_device_is_removed_by_the_worker(io_worker, push_app, pshutter, apns_server):
    alice, bob = pshutter.account("alice"), pshutter.account("bob")
    register(pshutter, alice)
    apns_server.answer(410, "Unregistered", token=TOKEN_A)
    assert pshutter.relate(bob, alice, "follow").status_code == 200
    apns_server.wait_for(1, status=410)
    deadline = time.monotonic() + 10
    while device_tokens(push_app.extensions["shutter"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert device_tokens(push_app.extensions["shutter"]) == set()


def test_healthz_says_push_is_on_once_apns_is_configured(pshutter):
    response = pshutter.client.get("/healthz")
    assert response.status_code == 200, response.json
    assert response.json["data"]["push"] == "on"


@pytest.mark.parametrize("key", ["missing", "not a key"])
def test_healthz_says_push_is_down_when_its_key_file_is_bad(make_app, tmp_path, key):
    path = tmp_path / "AuthKey.p8"
    if key != "missing":
        path.write_text(key)
    app = make_app(apns_key_file=str(path), apns_key_id=KEY_ID, apns_team_id=TEAM_ID, apns_topic="com.example.shutter")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503, response.json
    assert response.json["data"]["push"].startswith("down: ")


def test_without_apns_settings_push_is_off(app, shutter):
    services = app.extensions["shutter"]
    assert services.push.enabled is False
    alice, bob = shutter.account("alice"), shutter.account("bob")
    register(shutter, alice)
    _queued(services)  # what other tests left
    from tests.test_media_api import photo_row

    media_id = photo_of(shutter, app, alice)
    assert photo_row(app, media_id).status == "ready"
    assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert shutter.relate(bob, alice, "follow").status_code == 200
    assert [name for name, _kwargs in _queued(services) if name.startswith("tasks.push.")] == []
