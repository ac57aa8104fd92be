"""A Redis blip right after a commit (app/platform/aftercommit.py).

The API reaches Redis through a FaultProxy, refused by a SQLAlchemy
`after_commit` listener of the test at the request's commit: the token was
looked up before, so only the work that follows the commit meets the dead
Redis. Each write still answers its success status, the database holds it
once (no 500, so no retried duplicate), and once Redis is back and a real
worker (whose Redis is not proxied) ran what was handed to it, reads are
right. The broker is the real one, not proxied.
"""
from __future__ import annotations

import io
import time
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.media import pipeline
from app.platform.keys import feed_key, following_key
from models import Block, Comment, Follow, Like, Outbox, Photo
from tests.faults import FaultProxy
from tests.support import Shutter
from tests.test_feeds import JPEG, follow, post_photo, services_of
from tests.test_rendered_feed import read

WAIT = 30  # seconds for the worker to do what was handed to it


@pytest.fixture
def redis_proxy(settings):
    parts = urlsplit(settings.redis_url)
    with FaultProxy(parts.hostname, parts.port) as proxy:
        yield proxy


@pytest.fixture
def shutter(make_app, redis_proxy, settings):
    db = urlsplit(settings.redis_url).path or "/0"
    return Shutter(make_app(redis_url=redis_proxy.url_for("redis", path=db)).test_client())


@pytest.fixture
def worker(worker_process, settings):
    """A real worker on the real Redis and broker; started once the scene is set
    (starting purges the queues of what the set-up published)."""
    return worker_process(settings)


@contextmanager
def redis_refused_after_commit(proxy: FaultProxy):
    """Redis refuses from the first commit of a transaction inside the block; back after it."""
    def refuse(session: Session) -> None:
        if not session.in_nested_transaction():  # a savepoint's release is no commit
            proxy.refuse()

    event.listen(Session, "after_commit", refuse)
    try:
        yield
    finally:
        event.remove(Session, "after_commit", refuse)
        proxy.forward()


def count(shutter, model, *where) -> int:
    with services_of(shutter).db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def eventually(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(0.2)


def activity_types(shutter, account) -> list[str]:
    response = shutter.get("/v1/users/self/activity", account)
    assert response.status_code == 200, response.json
    return [a["type"] for a in response.json["data"]]


def media(shutter, account, photo_id: int) -> dict:
    response = shutter.get(f"/v1/media/{photo_id}", account)
    assert response.status_code == 200, response.json
    return response.json["data"]


def feed_ids(shutter, account) -> list[int]:
    body, _ = read(shutter, account)
    return [int(m["id"].split("_")[0]) for m in body["data"]]


@pytest.fixture
def scene(shutter):
    """alice follows bob; bob posted a photo; both read their activity (so each
    copy in Redis is built, holding its sentinel) and alice her feed (warm)."""
    alice, bob, carol = (shutter.account(name) for name in ("alice", "bob", "carol"))
    follow(shutter, alice, bob)
    photo = post_photo(shutter, bob)
    for who in (alice, bob, carol):
        assert activity_types(shutter, who) in (["follow"], [])
    feed_ids(shutter, alice)
    assert feed_ids(shutter, alice) == [photo] and read(shutter, alice)[1]  # warm now
    return alice, bob, carol, photo


def test_upload_with_a_mention(shutter, scene, worker, redis_proxy):
    alice, bob, _, _ = scene
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        response = shutter.post("/v1/media/upload", bob, files={"photo": (io.BytesIO(JPEG), "p.jpg")},
                                caption="for @alice", headers={"Idempotency-Key": "k1"})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert count(shutter, Photo, Photo.user_id == int(bob.id)) == 2
    new = int(response.json["data"]["id"].split("_")[0])
    # The worker makes it ready; the mention then shows (activity shows mentions of published photos).
    eventually(lambda: "mention" in activity_types(shutter, alice), "alice's mention")
    eventually(lambda: new in feed_ids(shutter, alice), "the new photo fanned out to alice")


def test_comment_and_like(shutter, scene, worker, redis_proxy):
    alice, bob, _, photo = scene
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        commented = shutter.post(f"/v1/media/{photo}/comments", alice, text="nice")
    assert commented.status_code == 200, commented.get_data(as_text=True)
    with redis_refused_after_commit(redis_proxy):
        liked = shutter.post(f"/v1/media/{photo}/likes", alice)
    assert liked.status_code == 200, liked.get_data(as_text=True)
    assert count(shutter, Comment, Comment.photo_id == photo) == 1
    assert count(shutter, Like, Like.photo_id == photo) == 1
    eventually(lambda: sorted(activity_types(shutter, bob)) == ["comment", "follow", "like"], "bob's activity")
    shown = media(shutter, alice, photo)
    assert (shown["comments"]["count"], shown["likes"]["count"], shown["user_has_liked"]) == (1, 1, True)

    def warm_feed_agrees():  # the rendered entry was forgotten, the liked set updated
        body, _ = read(shutter, alice)
        (entry,) = body["data"]
        return (entry["comments"]["count"], entry["likes"]["count"], entry["user_has_liked"]) == (1, 1, True)
    eventually(warm_feed_agrees, "alice's feed shows the comment and her like")
    # Every hand-off reached the broker at once (liked_changed's photo_id once went to
    # the outbox row's column, and its publish failed on the missing argument).
    assert count(shutter, Outbox, Outbox.delivered_at.is_(None)) == 0


def test_delete(shutter, scene, worker, redis_proxy):
    alice, bob, _, photo = scene
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        response = shutter.delete(f"/v1/media/{photo}", bob)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert count(shutter, Photo) == 0
    redis = services_of(shutter).redis
    eventually(lambda: not {str(photo)} & (set(redis.zrange(feed_key(int(alice.id)), 0, -1))
                                           | set(redis.zrange(feed_key(int(bob.id)), 0, -1))),
               "the photo leaves the feeds")
    assert feed_ids(shutter, alice) == [] and feed_ids(shutter, bob) == []
    assert shutter.get(f"/v1/users/{bob.id}", bob).json["data"]["counts"]["media"] == 0


def test_profile_edit(shutter, scene, worker, redis_proxy):
    alice, bob, _, photo = scene
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        response = shutter.post("/v1/users/self", bob, full_name="Bob Renamed")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["data"]["full_name"] == "Bob Renamed"
    assert shutter.get(f"/v1/users/{bob.id}", alice).json["data"]["full_name"] == "Bob Renamed"
    eventually(lambda: read(shutter, alice)[0]["data"][0]["user"]["full_name"] == "Bob Renamed",
               "alice's warm feed shows bob's new name")


def test_follow(shutter, scene, worker, redis_proxy):
    _, bob, carol, photo = scene
    assert feed_ids(shutter, carol) == [] and read(shutter, carol)[1]  # built and warm, without bob
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        response = shutter.relate(carol, bob, "follow")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert count(shutter, Follow, Follow.follower_id == int(carol.id)) == 1
    eventually(lambda: feed_ids(shutter, carol) == [photo], "bob's photo merged into carol's feed")
    eventually(lambda: activity_types(shutter, bob).count("follow") == 2, "bob hears of carol's follow")


def test_going_public(shutter, scene, worker, redis_proxy):
    """Approving every request is a follow that starts, for each requester."""
    _, bob, carol, _ = scene
    dave = shutter.account("dave", private=True)
    assert shutter.relate(carol, dave, "follow").status_code == 200  # a request
    dave_photo = post_photo(shutter, dave)
    assert feed_ids(shutter, carol) == [] and read(shutter, carol)[1]
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        response = shutter.post("/v1/users/self", dave, is_private="false")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert count(shutter, Follow, Follow.followee_id == int(dave.id), Follow.status == "active") == 1
    eventually(lambda: feed_ids(shutter, carol) == [dave_photo], "dave's photo merged into carol's feed")


def test_block_empties_the_warm_feed_without_waiting_for_the_followee_ttl(shutter, worker, redis_proxy):
    """bob is private and alice an approved follower: after a block hit by the
    blip, none of bob's photos stays in alice's warm feed."""
    alice, bob = shutter.account("alice"), shutter.account("bob", private=True)
    follow(shutter, alice, bob)
    assert shutter.relate(bob, alice, "approve").status_code == 200
    mine = post_photo(shutter, alice)
    bobs = [post_photo(shutter, bob) for _ in range(2)]
    assert feed_ids(shutter, alice) == [*reversed(bobs), mine] and read(shutter, alice)[1]  # warm
    worker.start()
    with redis_refused_after_commit(redis_proxy):
        response = shutter.relate(alice, bob, "block")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert count(shutter, Block) == 1 and count(shutter, Follow) == 0
    redis = services_of(shutter).redis
    eventually(lambda: not redis.exists(following_key(int(alice.id))), "alice's followee set dropped")
    eventually(lambda: not {str(b) for b in bobs} & set(redis.zrange(feed_key(int(alice.id)), 0, -1)),
               "bob's photos leave alice's feed")
    assert feed_ids(shutter, alice) == [mine]
    assert feed_ids(shutter, alice) == [mine] and read(shutter, alice)[1]  # warm again, still without bob's


def test_with_the_broker_down_too_the_sweeper_sends_the_follow_up(make_app, settings, worker, redis_proxy):
    """Redis and the broker both refused after an unfollow's commit: the follow-up
    waits in the outbox until the sweeper sends it to the worker."""
    broker = urlsplit(settings.broker_url)
    with FaultProxy(broker.hostname, broker.port) as broker_proxy:
        userinfo = broker.netloc.rpartition("@")[0]
        db = urlsplit(settings.redis_url).path or "/0"
        app = make_app(redis_url=redis_proxy.url_for("redis", path=db),
                       celery_broker_url=broker_proxy.url_for(broker.scheme, f"{userinfo}@" if userinfo else "",
                                                              broker.path))
        shutter = Shutter(app.test_client())
        alice, bob = shutter.account("alice"), shutter.account("bob")
        follow(shutter, alice, bob)
        photo = post_photo(shutter, bob)
        assert feed_ids(shutter, alice) == [photo] and read(shutter, alice)[1]
        worker.start()
        broker_proxy.refuse()
        with redis_refused_after_commit(redis_proxy):
            response = shutter.relate(alice, bob, "unfollow")
        assert response.status_code == 200, response.get_data(as_text=True)
        services = services_of(shutter)
        with services.db.session() as session:
            rows = session.scalars(select(Outbox).where(Outbox.kind == "tasks.feeds.follow_ended")).all()
            assert [(r.payload, r.delivered_at) for r in rows] == [
                ({"follower_id": int(alice.id), "followee_id": int(bob.id)}, None)]
        broker_proxy.forward()
        with services.db.session() as session:
            assert pipeline.sweep(session, services.celery, outbox_grace=timedelta(0))["outbox"] >= 1
        redis = services.redis
        eventually(lambda: str(photo) not in redis.zrange(feed_key(int(alice.id)), 0, -1), "bob's photo leaves")
        assert feed_ids(shutter, alice) == []


# -- the unit's contract, on a real session ------------------------------------------

def test_steps_run_once_after_the_commit_each_on_its_own(app):
    from app.platform.aftercommit import after_commit

    ran = []

    def fails():
        raise RuntimeError("a step that fails")

    with app.extensions["shutter"].db.session() as session:
        unit = after_commit(session)
        unit.best_effort("first", ran.append, "first")
        unit.best_effort("fails", fails)
        unit.best_effort("last", ran.append, "last")
        with session.begin_nested():  # a savepoint's release is not the commit
            session.execute(select(1))
        assert ran == []
        session.commit()
        assert ran == ["first", "last"]
        session.commit()  # once: a later commit runs only what was registered since
        assert ran == ["first", "last"]


def test_steps_of_a_transaction_that_did_not_commit_are_dropped(app):
    from app.platform.aftercommit import after_commit

    ran = []
    with app.extensions["shutter"].db.session() as session:
        session.execute(select(1))  # in a transaction, as writers register
        after_commit(session).best_effort("rolled back", ran.append, "rolled back")
        session.rollback()
        session.commit()
        session.execute(select(1))
        after_commit(session).best_effort("closed", ran.append, "closed")
        session.close()  # ends the transaction without a commit
        session.execute(select(1))
        session.commit()
    assert ran == []
