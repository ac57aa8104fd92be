"""Fan-out and removal resume where they stopped (issue 11, item 10).

Each feed task writes one chunk of followers, then promises the next chunk
through the outbox. Here the broker is refused between two chunks (through
a FaultProxy: real RabbitMQ on production, the embedded Redis broker on
embedded): the promise waits in the outbox, and once the broker is back the
sweeper publishes it and a REAL worker finishes the job.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event, select

from app.media import pipeline
from models import Outbox
from tests.faults import FaultProxy
from tests.support import Shutter
from tests.test_feeds import follow, members, post_photo, services_of
from tests.test_pipeline_faults import wait_until

CHUNK = 2
FOLLOWERS = 5  # three chunks: 2, 2, 1


@pytest.fixture
def broker_proxy(settings):
    broker = urlsplit(settings.broker_url)
    with FaultProxy(broker.hostname, broker.port) as proxy:
        yield proxy


def through(proxy: FaultProxy, url: str) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return proxy.url_for(parts.scheme, f"{userinfo}@" if userinfo else "", parts.path)


@pytest.fixture
def shutter(make_app, settings, broker_proxy) -> Shutter:
    """The API (and this test's in-process feed work) publish through the proxy."""
    app = make_app(fanout_chunk=CHUNK, celery_broker_url=through(broker_proxy, settings.broker_url))
    return Shutter(app.test_client())


@pytest.fixture
def worker(worker_process, settings):
    """Not started: a worker whose own broker is fine, with the same small chunks."""
    return worker_process(dataclasses.replace(settings, fanout_chunk=CHUNK))


@pytest.fixture
def refuse_on_promise(broker_proxy):
    """The broker dies right after a chunk was written, as its next chunk is promised."""
    def refuse(_mapper, _connection, row):
        # Only a chunk's promise: follows promise tasks.feeds.follow_started rows too.
        if row.kind in ("tasks.feeds.fan_out", "tasks.feeds.remove_photo"):
            broker_proxy.refuse()

    event.listen(Outbox, "after_insert", refuse)
    yield
    event.remove(Outbox, "after_insert", refuse)


def feed_rows(services, kind: str) -> list[Outbox]:
    with services.db.session() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id)))


def sweep_when_the_broker_is_back(services, broker_proxy, worker) -> None:
    broker_proxy.forward()
    worker.start()  # purges the queues first: only what the sweeper publishes runs
    with services.db.session() as session:
        assert pipeline.sweep(session, services.celery, outbox_grace=timedelta(0))["outbox"] == 1


def author_with_followers(shutter):
    """An author, FOLLOWERS active followers, and a ready photo not fanned out yet."""
    author = shutter.account("author")
    followers = [shutter.account(f"f{i}") for i in range(FOLLOWERS)]
    for who in followers:
        follow(shutter, who, author)
    return author, followers, post_photo(shutter, author, fan_out=False)


def test_a_fan_out_refused_between_chunks_resumes(shutter, broker_proxy, worker, refuse_on_promise):
    author, followers, photo = author_with_followers(shutter)
    services = services_of(shutter)

    services.feeds.fan_out_step(photo, 0)  # the first chunk, as the feed task runs it
    reached = [str(photo) in members(shutter, who) for who in followers]
    assert reached == [True, True, False, False, False]
    [promise] = feed_rows(services, "tasks.feeds.fan_out")
    assert promise.delivered_at is None and promise.attempts == 1  # left to the sweeper
    assert promise.payload["photo_id"] == photo and promise.payload["after"] > 0

    sweep_when_the_broker_is_back(services, broker_proxy, worker)
    wait_until(lambda: all(str(photo) in members(shutter, who) for who in followers),
               what="every follower's feed to get the photo", worker=worker)
    # Each feed holds the photo once, and each chunk was promised once.
    assert all(services.redis.zcard(f"feed:{who.id}") == 1 for who in followers)
    wait_until(lambda: all(r.delivered_at for r in feed_rows(services, "tasks.feeds.fan_out")),
               what="the last chunk's promise to be delivered", worker=worker)
    assert [r.id for r in feed_rows(services, "tasks.feeds.fan_out")][:1] == [promise.id]
    assert len(feed_rows(services, "tasks.feeds.fan_out")) == 2  # chunks 2 and 3, once each


def test_a_removal_refused_between_chunks_resumes(shutter, broker_proxy, worker, refuse_on_promise):
    author, followers, photo = author_with_followers(shutter)
    services = services_of(shutter)
    services.feeds.fan_out_all(photo)
    assert all(str(photo) in members(shutter, who) for who in followers)

    services.feeds.remove_photo_step(photo, int(author.id), 0)
    assert [str(photo) in members(shutter, who) for who in followers] == [False, False, True, True, True]
    [promise] = feed_rows(services, "tasks.feeds.remove_photo")
    assert promise.delivered_at is None and promise.attempts == 1

    sweep_when_the_broker_is_back(services, broker_proxy, worker)
    wait_until(lambda: not any(str(photo) in members(shutter, who) for who in followers),
               what="every follower's feed to lose the photo", worker=worker)
    assert len(feed_rows(services, "tasks.feeds.remove_photo")) == 2
