"""Real-time subscriptions (v1's PubSubHubbub-style callbacks): an API client asks to be
told about new media of its users, a tag, a location or an area.

    create   (API)  the hub.challenge handshake with the callback, then the row
    notify   (io)   a photo became ready: the subscriptions it matches, each claimed once,
                    their updates batched per (client, callback URL) and promised
                    through the outbox as tasks.realtime.deliver
    deliver  (io)   one signed POST of a batch; failures retried with backoff and
                    jitter, and a subscription failing SUBSCRIPTION_MAX_FAILURES times
                    in a row is disabled (no longer matched, gone from GET)

Who is told about what:
- a `user` subscription covers the users who authorized the client (hold a live token
  of it), as v1's did; with an object_id, that one of them only;
- `tag`, `location` and `geography` subscriptions cover every public photo that matches;
- a private account's photo is announced only to clients through which someone who may
  see it (its owner or an approved follower, no block: app.social.visibility) has
  authorized the client: the client could read the photo with that user's token anyway.

At most once per photo and subscription: notify claims (subscription, photo) in
subscription_deliveries in the same commit as the outbox rows of the batches, so a
notification run twice (a redelivered task) announces nothing twice. The POST itself is
at least once: a worker killed between the callback's answer and the task's
acknowledgement sends that batch again.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy import and_, delete, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.errors import APIError, InvalidParameters, NotAllowed, NotFound
from app.platform import metrics, outbox, text
from app.platform.aftercommit import after_commit
from app.realtime.callbacks import CallbackClient, CallbackError, CallbackRefused, UnknownHost
from app.social.visibility import may_view
from models import (AccessToken, Client, Location, Photo, PhotoTag, Subscription, SubscriptionDelivery, Tag, User,
                    begin_write, utcnow)
from models.ids import MAX_ID

log = logging.getLogger(__name__)

OBJECTS = ("user", "tag", "location", "geography")
ASPECTS = ("media",)
MAX_RADIUS_METERS = 5000
DEFAULT_RADIUS_METERS = 1000
EARTH_RADIUS_METERS = 6_371_008.8
# The latitude band that holds every geography that may reach a photo (a degree of
# latitude is ~111.2 km everywhere); longitude is checked exactly, after it.
_BAND_DEGREES = MAX_RADIUS_METERS / (EARTH_RADIUS_METERS * math.pi / 180) * 1.01
DELIVER_TASK = "tasks.realtime.deliver"


class SubscriptionError(APIError):
    """The callback failed the handshake, or may not be reached (v1's error type)."""

    error_type = "APISubscriptionError"


@dataclass
class NewSubscription:
    object: str
    callback_url: str
    aspect: str = "media"
    verify_token: str = ""
    object_id: str | None = None
    lat: float | None = None
    lng: float | None = None
    radius: int | None = None


def subscription_json(subscription: Subscription) -> dict:
    """A subscription as v1 answered it (POST and GET /v1/subscriptions)."""
    body = {"id": str(subscription.id), "type": "subscription", "object": subscription.object,
            "object_id": subscription.object_id, "aspect": subscription.aspect,
            "callback_url": subscription.callback_url}
    if subscription.object == "geography":
        body.update(lat=subscription.latitude, lng=subscription.longitude, radius=subscription.radius)
    return body


def hub_signature(client_secret: str, body: bytes) -> str:
    """X-Hub-Signature: lowercase hex HMAC-SHA1 of the raw body, keyed by the client secret."""
    return hmac.new(client_secret.encode(), body, hashlib.sha1).hexdigest()


def distance_meters(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine): right across the antimeridian and near the poles."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_METERS * math.asin(min(1.0, math.sqrt(a)))


def _id(raw: str) -> int | None:
    """A row id sent as a string; None when it cannot be one."""
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= MAX_ID else None


def _authorized_by(user_id, client_pk):
    """A live token of the client held by the user: the user authorized the client."""
    return exists().where(AccessToken.client_pk == client_pk, AccessToken.user_id == user_id,
                          AccessToken.revoked_at.is_(None))


class SubscriptionService:
    def __init__(self, db, callbacks: CallbackClient, celery, *, max_failures: int,
                 retry_backoff_seconds: int, retry_backoff_max_seconds: int) -> None:
        self.db = db
        self.callbacks = callbacks
        self.celery = celery
        self.max_failures = max_failures
        self.retry_backoff_seconds = retry_backoff_seconds
        self.retry_backoff_max_seconds = retry_backoff_max_seconds

    # -- the client's side: create, list, delete ------------------------------------
    def create(self, session: Session, client: Client, new: NewSubscription) -> Subscription:
        """Check the request, shake hands with the callback, then store the subscription."""
        object_id = self._object_id(session, client, new)
        session.commit()  # nothing held (SQLite's lock, a pooled connection) while the callback answers
        self.verify_callback(new.callback_url, new.verify_token)
        begin_write(session)
        subscription_id = session.scalar(select(func.shutter_next_id()))
        geography = new.object == "geography"
        subscription = Subscription(
            id=subscription_id, client_pk=client.id, object=new.object, aspect=new.aspect,
            # a geography is known by its own id, as in v1 (/geographies/{id}/media/recent)
            object_id=str(subscription_id) if geography else object_id,
            callback_url=new.callback_url, verify_token=new.verify_token,
            latitude=new.lat if geography else None, longitude=new.lng if geography else None,
            radius=(new.radius or DEFAULT_RADIUS_METERS) if geography else None,
        )
        session.add(subscription)
        session.commit()
        return subscription

    def _object_id(self, session: Session, client: Client, new: NewSubscription) -> str | None:
        """What the subscription is about, checked: 400 (404 for an unknown location) otherwise."""
        if new.object == "geography":
            if new.lat is None or new.lng is None:
                raise InvalidParameters("A geography subscription needs lat and lng (and radius, up to "
                                        f"{MAX_RADIUS_METERS} m; {DEFAULT_RADIUS_METERS} by default).")
            return None
        raw = new.object_id
        if new.object == "user":
            # v1: every user who authorized the client. An object_id narrows it to one of them.
            if raw is None:
                return None
            user_id = _id(raw)
            if user_id is None:
                raise InvalidParameters(f"invalid object_id for a user subscription: {raw!r}")
            if not session.scalar(select(_authorized_by(user_id, client.id))):
                raise NotAllowed("A user subscription covers the client's own users: this user has not "
                                 "authorized the client.")
            return str(user_id)
        if raw is None:
            raise InvalidParameters(f"A {new.object} subscription needs object_id.")
        if new.object == "tag":
            name = text.normal_tag_name(raw.removeprefix("#"))
            if name is None:
                raise InvalidParameters(f"invalid tag name: {raw!r}")
            return name
        location_id = _id(raw)
        if location_id is None:
            raise InvalidParameters(f"invalid location id: {raw!r}")
        if session.get(Location, location_id) is None:
            raise NotFound("this location does not exist")
        return str(location_id)

    def verify_callback(self, callback_url: str, verify_token: str) -> None:
        """v1's handshake: GET the callback with a random hub.challenge; it must answer 200 with
        the challenge as its body. SubscriptionError otherwise (nothing is stored)."""
        challenge = secrets.token_hex(16)
        params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
        try:
            response = self.callbacks.get(callback_url, params)
        except (CallbackRefused, UnknownHost) as error:
            log.info("subscription handshake refused: %s", error)
            # The same words for a refused address and an unknown name: no oracle of internal DNS.
            raise SubscriptionError("callback_url cannot be reached: its host is unknown, or is an address "
                                    "callbacks may not reach.") from error
        except CallbackError as error:
            log.info("subscription handshake failed: %s", error)
            raise SubscriptionError("Unable to reach callback_url (connection failed or timed out).") from error
        if response.status != 200:
            raise SubscriptionError(f"Challenge verification failed: the callback answered HTTP {response.status} "
                                    "(redirects are not followed).")
        if response.body.strip() != challenge.encode():
            raise SubscriptionError("Challenge verification failed: the callback's answer was not the "
                                    "hub.challenge it was sent.")

    def subscriptions_of(self, session: Session, client: Client) -> list[Subscription]:
        """The client's subscriptions, disabled ones left out."""
        return list(session.scalars(select(Subscription).where(
            Subscription.client_pk == client.id, Subscription.disabled_at.is_(None)).order_by(Subscription.id)))

    def remove(self, session: Session, client: Client, subscription_id: int | None = None,
               object_type: str | None = None) -> int:
        """One subscription by id, or all of an object type ("all": every one). 404 for an id
        that is not one of the client's."""
        if subscription_id is None and object_type is None:
            raise InvalidParameters("Give id, or object (all, user, tag, location or geography).")
        condition = Subscription.client_pk == client.id
        if subscription_id is not None:
            condition = and_(condition, Subscription.id == subscription_id)
        elif object_type != "all":
            condition = and_(condition, Subscription.object == object_type)
        begin_write(session)
        deleted = session.execute(delete(Subscription).where(condition)).rowcount
        session.commit()
        if subscription_id is not None and not deleted:
            raise NotFound("this subscription does not exist")
        return deleted

    # -- the photo's side: notify, deliver ---------------------------------------
    def notify(self, photo_id: int) -> int:
        """A photo became ready: promise one signed batch per (client, callback URL) it concerns.
        Returns the number of updates promised (0 for one already announced)."""
        with self.db.session() as session:
            photo = session.get(Photo, photo_id)
            if photo is None or photo.status != "ready":
                return 0  # deleted meanwhile
            owner = session.get(User, photo.user_id)
            matched = self.matching(session, photo, owner)
            claimed = self._claim(session, photo_id, [s.id for s in matched])
            batches: dict[tuple[int, str], list[dict]] = {}
            when = int((photo.ready_at or photo.created_at).timestamp())
            for subscription in matched:
                if subscription.id in claimed:
                    batches.setdefault((subscription.client_pk, subscription.callback_url), []).append(
                        self._update(subscription, photo, when))
            unit = after_commit(session)
            for (client_pk, callback_url), updates in batches.items():
                unit.must_happen(session, outbox.task(DELIVER_TASK, client_pk=client_pk, callback_url=callback_url,
                                                      updates=updates), celery=self.celery)
            session.commit()
        return sum(len(updates) for updates in batches.values())

    def matching(self, session: Session, photo: Photo, owner: User) -> list[Subscription]:
        """The enabled subscriptions that this ready photo concerns (see the module's docstring)."""
        lat, lng = photo.latitude, photo.longitude
        if (lat is None or lng is None) and photo.location_id is not None:
            location = session.get(Location, photo.location_id)
            lat, lng = (location.latitude, location.longitude) if location else (None, None)
        tag_names = session.scalars(select(Tag.name).join(PhotoTag, PhotoTag.tag_id == Tag.id)
                                    .where(PhotoTag.photo_id == photo.id)).all()
        wanted = [and_(Subscription.object == "user", _authorized_by(owner.id, Subscription.client_pk),
                       or_(Subscription.object_id.is_(None), Subscription.object_id == str(owner.id)))]
        if tag_names:
            wanted.append(and_(Subscription.object == "tag", Subscription.object_id.in_(tag_names)))
        if photo.location_id is not None:
            wanted.append(and_(Subscription.object == "location", Subscription.object_id == str(photo.location_id)))
        if lat is not None and lng is not None:
            wanted.append(and_(Subscription.object == "geography",
                               Subscription.latitude.between(lat - _BAND_DEGREES, lat + _BAND_DEGREES)))
        query = select(Subscription).where(Subscription.disabled_at.is_(None), or_(*wanted))
        if owner.is_private:
            viewer = aliased(AccessToken)
            query = query.where(exists().where(viewer.client_pk == Subscription.client_pk,
                                               viewer.revoked_at.is_(None), may_view(viewer.user_id, owner)))
        return [s for s in session.scalars(query.order_by(Subscription.id))
                if s.object != "geography" or distance_meters(lat, lng, s.latitude, s.longitude) <= s.radius]

    @staticmethod
    def _claim(session: Session, photo_id: int, subscription_ids: list[int]) -> set[int]:
        """Those of the subscriptions not yet told about the photo, now marked as told (in the
        caller's transaction)."""
        if not subscription_ids:
            return set()
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        now = utcnow()
        claim = (dialect.insert(SubscriptionDelivery)
                 .values([{"subscription_id": i, "photo_id": photo_id, "created_at": now} for i in subscription_ids])
                 .on_conflict_do_nothing()
                 .returning(SubscriptionDelivery.subscription_id))
        return set(session.scalars(claim))

    @staticmethod
    def _update(subscription: Subscription, photo: Photo, when: int) -> dict:
        """One entry of v1's update array. `aspect` as API.md names it; `changed_aspect` as v1 sent it."""
        object_id = str(photo.user_id) if subscription.object == "user" else subscription.object_id
        return {"object": subscription.object, "object_id": object_id, "aspect": subscription.aspect,
                "changed_aspect": subscription.aspect, "time": when, "subscription_id": str(subscription.id),
                "data": {"media_id": f"{photo.id}_{photo.user_id}"}}

    def deliver(self, client_pk: int, callback_url: str, updates: list[dict]) -> bool:
        """POST one batch, signed. True when done (delivered, or nobody left to tell);
        False when it failed and should be retried (retry_delay)."""
        ids = [int(update_["subscription_id"]) for update_ in updates]
        with self.db.session(read_only=True) as session:  # one query: the live ones and the secret
            rows = session.execute(
                select(Subscription.id, Subscription.failures, Client.client_secret)
                .join(Client, Client.id == Subscription.client_pk)
                .where(Subscription.id.in_(ids), Subscription.client_pk == client_pk,
                       Subscription.disabled_at.is_(None))).all()
        failures = {row.id: row.failures for row in rows}
        live = set(failures)
        updates = [update_ for update_ in updates if int(update_["subscription_id"]) in live]
        if not updates:
            metrics.CALLBACK_DELIVERIES.labels(metrics.CALLBACK_DROPPED).inc()
            return True  # deleted or disabled meanwhile
        secret = rows[0].client_secret
        body = json.dumps(updates, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": hub_signature(secret, body)}
        try:
            response = self.callbacks.post(callback_url, body, headers)
            error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except CallbackError as failure:
            error = str(failure)
        if error is None:
            if any(failures.values()):  # a success ends a run of failures (no write otherwise)
                with self.db.session() as session:
                    session.execute(update(Subscription).where(Subscription.id.in_(live), Subscription.failures > 0)
                                    .values(failures=0, last_error=None),
                                    execution_options={"synchronize_session": False})
                    session.commit()
            metrics.CALLBACK_DELIVERIES.labels(metrics.CALLBACK_DELIVERED).inc()
            return True
        with self.db.session() as session:
            still = self._failed(session, sorted(live), error)
        metrics.CALLBACK_DELIVERIES.labels(metrics.CALLBACK_FAILED).inc()
        return not still

    def _failed(self, session: Session, ids: list[int], error: str) -> list[int]:
        """Count a failed delivery against each subscription; disable those that reached the limit.
        Returns the ones still enabled (their batch is retried)."""
        enabled = and_(Subscription.id.in_(ids), Subscription.disabled_at.is_(None))
        plain = {"synchronize_session": False}
        session.execute(update(Subscription).where(enabled)
                        .values(failures=Subscription.failures + 1, last_error=error[:300]), execution_options=plain)
        disabled = session.scalars(update(Subscription)
                                   .where(enabled, Subscription.failures >= self.max_failures)
                                   .values(disabled_at=utcnow()).returning(Subscription.id),
                                   execution_options=plain).all()
        still = session.scalars(select(Subscription.id).where(enabled)).all()
        session.commit()
        if disabled:
            log.warning("subscriptions %s disabled after %d failed deliveries in a row (%s)",
                        disabled, self.max_failures, error)
        return list(still)

    def purge_claims(self, older_than: timedelta, batch: int = 1000, max_batches: int = 20) -> int:
        """Delete claims older than `older_than` (the sweeper, with OUTBOX_RETENTION_HOURS), in
        bounded batches: a notification runs again only soon after the first (a redelivered task),
        so by then they have done their work. Returns how many went."""
        cutoff = utcnow() - older_than
        key = tuple_(SubscriptionDelivery.subscription_id, SubscriptionDelivery.photo_id)
        deleted = 0
        with self.db.session() as session:
            for _ in range(max_batches):
                old = (select(SubscriptionDelivery.subscription_id, SubscriptionDelivery.photo_id)
                       .where(SubscriptionDelivery.created_at < cutoff).limit(batch))
                count = session.execute(delete(SubscriptionDelivery).where(key.in_(old))).rowcount
                session.commit()
                deleted += count
                if count < batch:
                    break
        return deleted

    def retry_delay(self, retries: int) -> float:
        """Seconds before retry number `retries` + 1: exponential, full jitter (Celery's own formula)."""
        return get_exponential_backoff_interval(self.retry_backoff_seconds, retries,
                                                self.retry_backoff_max_seconds, full_jitter=True)
