"""An account crossing CELEBRITY_THRESHOLD, both ways (issue 11, item 11).

A celebrity's photos are not fanned out but merged at read time; when its
follower count crosses the threshold, the follow change's commit promises a
catch-up (tasks.feeds.celebrity_crossed, through the outbox) that a REAL feed
worker runs: below it, the photos posted meanwhile join the followers'
feeds; above it, the followers' cached celebs lists go, so new photos are
merged at once rather than after CELEBRITIES_TTL.
"""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from app.platform.keys import celebrities_key, feed_key
from models import Outbox
from tests.support import Shutter
from tests.test_feeds import feed, follow, members, post_photo, services_of
from tests.test_pipeline_faults import wait_until

THRESHOLD = 2  # above 2 followers: a celebrity
CROSSED_TASK = "tasks.feeds.celebrity_crossed"


@pytest.fixture
def shutter(make_app) -> Shutter:
    return Shutter(make_app(celebrity_threshold=THRESHOLD).test_client())


@pytest.fixture
def worker(worker_process, settings):
    """Not started yet; start() purges the queues. A feed worker: the tests make their
    photos ready in-process (post_photo), which a media worker would race."""
    return worker_process(dataclasses.replace(settings, celebrity_threshold=THRESHOLD), queues="feed,default")


def crossings(shutter) -> list[Outbox]:
    with services_of(shutter).db.session() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == CROSSED_TASK).order_by(Outbox.id)))


def test_photos_posted_as_a_celebrity_reach_the_feeds_when_it_drops_below(shutter, worker):
    star, fan, other, third = (shutter.account(n) for n in ("star", "fan", "other", "third"))
    for who in (fan, other, third):
        follow(shutter, who, star)  # 3 followers: a celebrity
    assert feed(shutter, fan)[0] == []  # built; its celebs list names the star
    photo = post_photo(shutter, star)  # its fan-out runs here, in-process
    assert str(photo) not in members(shutter, fan)  # not fanned out ...
    assert feed(shutter, fan)[0] == [photo]  # ... but merged at read time
    worker.start()  # after the fan-out: a late one would see the unfollow below

    assert shutter.relate(third, star, "unfollow").status_code == 200  # 2 followers: no longer
    wait_until(lambda: all(str(photo) in members(shutter, who) for who in (fan, other)),
               timeout=15, what="the catch-up to write the photo into the feeds", worker=worker)
    redis = services_of(shutter).redis
    assert not redis.exists(celebrities_key(int(fan.id)))  # the merge list follows the new status
    for who in (fan, other):
        assert feed(shutter, who)[0] == [photo]  # warm
        assert feed(shutter, who)[0] == [photo]
    redis.delete(feed_key(int(fan.id)))
    assert feed(shutter, fan)[0] == [photo]  # cold: rebuilt from the database
    assert feed(shutter, fan)[0] == [photo]
    assert feed(shutter, third)[0] == []
    # Promised twice: by the third follow (up; its message purged by the
    # worker's start) and by the unfollow (down).
    assert [(c.payload, c.delivered_at is not None) for c in crossings(shutter)] == [
        ({"user_id": int(star.id)}, True)] * 2


def test_photos_of_a_new_celebrity_are_merged_at_once(shutter, worker):
    worker.start()
    star, fan, other, third = (shutter.account(n) for n in ("star", "fan", "other", "third"))
    for who in (fan, other):
        follow(shutter, who, star)  # 2 followers: fanned out
    assert feed(shutter, fan)[0] == []  # built; its celebs list (kept 60 s) is empty
    before = post_photo(shutter, star)
    assert str(before) in members(shutter, fan)

    follow(shutter, third, star)  # 3 followers: a celebrity from now on
    after = post_photo(shutter, star)
    assert str(after) not in members(shutter, fan)  # not fanned out: merged at read time
    wait_until(lambda: feed(shutter, fan)[0] == [after, before], timeout=15,
               what="the new celebrity's photo in a follower's feed", worker=worker)
    assert feed(shutter, fan)[0] == [after, before]
    for who in (other, third):
        assert feed(shutter, who)[0] == [after, before]
    [crossing] = crossings(shutter)
    assert crossing.payload == {"user_id": int(star.id)}
