"""Nothing grows without bound: the sweeper purges delivered outbox rows and
spent authorization codes after their retention, and the home feeds of users
away for FEED_INACTIVE_DAYS expire, are skipped by fan-out, and are rebuilt
when their users return.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update

from app.accounts.auth import sha256
from app.platform import retention
from app.platform.keys import feed_key
from models import AuthorizationCode, Client, Outbox, User, utcnow
from tests.test_feeds import feed, follow, post_photo, services_of

DAY = 86400


# --- purges ------------------------------------------------------------------


def _outbox_row(session, *, age: timedelta, delivered: timedelta | None) -> int:
    row = Outbox(kind="tasks.media.delete_files", payload={"keys": []}, created_at=utcnow() - age,
                 delivered_at=None if delivered is None else utcnow() - delivered)
    session.add(row)
    session.commit()
    return row.id


def test_the_sweeper_purges_old_delivered_outbox_rows(app, settings):
    services = app.extensions["shutter"]
    with services.db.session() as session:
        old = [_outbox_row(session, age=timedelta(days=9), delivered=timedelta(days=8)) for _ in range(3)]
        kept = [
            _outbox_row(session, age=timedelta(days=9), delivered=timedelta(hours=2)),  # recent delivery
            _outbox_row(session, age=timedelta(days=30), delivered=None),  # undelivered: the sweeper's
            _outbox_row(session, age=timedelta(seconds=1), delivered=None),
        ]
        assert retention.purge(session, settings) == {"outbox_purged": len(old), "codes_purged": 0}
        assert set(session.scalars(select(Outbox.id))) == set(kept)


def test_the_purge_goes_in_bounded_batches(app):
    services = app.extensions["shutter"]
    with services.db.session() as session:
        for _ in range(5):
            _outbox_row(session, age=timedelta(days=2), delivered=timedelta(days=2))
        purge = dict(older_than=timedelta(days=1), batch=2, max_batches=2)
        assert retention.purge_delivered_outbox(session, **purge) == 4  # two batches, then the next sweep
        assert retention.purge_delivered_outbox(session, **purge) == 1
        assert session.scalars(select(Outbox.id)).all() == []


def _code(session, user_id: int, client_pk: int, *, expires: timedelta, used: timedelta | None) -> int:
    row = AuthorizationCode(code_hash=sha256(secrets.token_hex(8)), user_id=user_id, client_pk=client_pk,
                            redirect_uri="http://localhost:9999/callback", scopes="basic",
                            expires_at=utcnow() + expires, used_at=None if used is None else utcnow() - used)
    session.add(row)
    session.commit()
    return row.id


def test_the_sweeper_purges_spent_authorization_codes(app, shutter, settings):
    alice = shutter.account("alice")
    services = app.extensions["shutter"]
    with services.db.session() as session:
        client_pk = session.scalar(select(Client.id).where(Client.client_id == shutter.app_client()["client_id"]))
        user_id = int(alice.id)
        spent = [
            _code(session, user_id, client_pk, expires=-timedelta(days=2), used=None),  # expired long ago
            _code(session, user_id, client_pk, expires=-timedelta(days=2), used=timedelta(days=2)),
            _code(session, user_id, client_pk, expires=timedelta(minutes=5), used=timedelta(days=2)),  # used long ago
        ]
        kept = [
            _code(session, user_id, client_pk, expires=timedelta(minutes=5), used=None),  # still usable
            _code(session, user_id, client_pk, expires=timedelta(minutes=5), used=timedelta(hours=1)),
            _code(session, user_id, client_pk, expires=-timedelta(hours=1), used=None),  # expired lately
        ]
        assert retention.purge(session, settings) == {"outbox_purged": 0, "codes_purged": len(spent)}
        assert set(session.scalars(select(AuthorizationCode.id))) == set(kept)


# --- feeds of inactive users ------------------------------------------------


def _away(shutter, account, days: float) -> None:
    """The account was last seen `days` ago, and its token lookup is no longer cached."""
    services = services_of(shutter)
    with services.db.session() as session:
        session.execute(update(User).where(User.id == int(account.id))
                        .values(last_active_at=utcnow() - timedelta(days=days)))
        session.commit()
    services.redis.delete(services.tokens.key(account.token))


def _last_active(shutter, account):
    with services_of(shutter).db.session() as session:
        return session.scalar(select(User.last_active_at).where(User.id == int(account.id)))


def test_an_inactive_follower_gets_no_feed_from_a_fan_out_and_a_rebuilt_one_on_return(shutter, settings):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, bob, alice)
    redis = services_of(shutter).redis
    _away(shutter, bob, settings.feed_inactive_days + 1)
    redis.delete(feed_key(int(bob.id)))  # expired meanwhile
    photo = post_photo(shutter, alice)
    assert not redis.exists(feed_key(int(bob.id)))  # fan-out did not make it again
    assert feed(shutter, bob)[0] == [photo]  # back: rebuilt on read
    assert _last_active(shutter, bob) > utcnow() - timedelta(minutes=1)


def test_a_returning_user_whose_feed_was_still_there_sees_what_fan_out_skipped(shutter, settings):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, bob, alice)
    first = post_photo(shutter, alice)
    assert feed(shutter, bob)[0] == [first]  # built
    _away(shutter, bob, settings.feed_inactive_days + 1)  # its TTL has not run out yet
    second = post_photo(shutter, alice)
    assert feed(shutter, bob)[0] == [second, first]


def test_the_feed_key_carries_the_inactive_ttl(shutter, settings):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    follow(shutter, bob, alice)
    redis = services_of(shutter).redis
    ttl = settings.feed_inactive_days * DAY
    post_photo(shutter, alice)  # fan-out makes bob's feed, and alice's own
    for user in (alice, bob):
        assert ttl - 60 < redis.ttl(feed_key(int(user.id))) <= ttl
    redis.delete(feed_key(int(bob.id)))
    feed(shutter, bob)  # built on read
    assert ttl - 60 < redis.ttl(feed_key(int(bob.id))) <= ttl
    redis.expire(feed_key(int(bob.id)), 100)
    _away(shutter, bob, 2)  # seen again after more than a day: the feed lives on
    feed(shutter, bob)
    assert ttl - 60 < redis.ttl(feed_key(int(bob.id))) <= ttl


def test_activity_is_recorded_at_most_once_a_day_and_not_on_a_cached_token(shutter):
    bob = shutter.account("bob")
    _away(shutter, bob, 0.5)
    seen = _last_active(shutter, bob)
    assert feed(shutter, bob)[0] == []  # resolved from the database, seen within a day: no write
    assert _last_active(shutter, bob) == seen
    with services_of(shutter).db.session() as session:
        session.execute(update(User).where(User.id == int(bob.id)).values(last_active_at=utcnow() - timedelta(days=2)))
        session.commit()
    assert feed(shutter, bob)[0] == []  # the token is cached now: nothing is written
    assert _last_active(shutter, bob) < utcnow() - timedelta(days=1)
    _away(shutter, bob, 2)
    assert feed(shutter, bob)[0] == []
    assert _last_active(shutter, bob) > utcnow() - timedelta(minutes=1)
