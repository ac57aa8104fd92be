"""Push notifications for activity: devices, preferences, the texts, and delivery.

A committed transaction's new activity (and its accepted follow requests)
reaches `notify` through one task (app/engagement/activity.py publishes it):
each notification is checked (the row still there, the photo visible to its
recipient, nobody blocked, the kind not switched off), its text and badge
made, and one `tasks.push.deliver` message sent per device of the recipient.
`deliver` sends one over APNs and acts on the answer: a device APNs calls
unregistered (410) or bad (400 BadDeviceToken) is removed; 429 and 5xx are
retried by the task with backoff and full jitter until the notification's
apns-expiration.

Both return results (app.push.apns: sent, unregistered, …, off_by_preference)
for the metrics to count. A notify run twice (a redelivered task) pushes each
activity once: its id is claimed in Redis before its deliveries are sent.
"""
from __future__ import annotations

import logging
import random
import re
import time
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.engagement import activity
from app.errors import NotFound
from app.platform import metrics
from app.platform.keys import push_claimed_key
from app.push.apns import (DEVICE_GONE, EXPIRED_TOKEN, OFF_BY_PREFERENCE, REJECTED, RETRYABLE, ApnsProvider,
                           Notification)
from app.social.visibility import blocked_either_way, visible_photo_ids
from models import Activity, Comment, Device, MutedNotification, Photo, User, utcnow

log = logging.getLogger(__name__)

DELIVER_TASK = "tasks.push.deliver"
KINDS = ("like", "comment", "mention", "follow", "follow_request", "follow_accepted")
ENVIRONMENTS = ("production", "sandbox")
TOKEN = re.compile(r"\A[0-9A-Fa-f]{64,200}\Z")  # 32 bytes today; Apple says they may grow (to 100)
TOPIC = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")  # a bundle id, maybe with .voip etc.
QUOTE_LENGTH = 100  # of a comment or caption in an alert
NOT_READY = "not_ready"  # a caption mention of a photo still processing: notify again later
GONE = "gone"  # the activity was undone, a user blocked the other, the photo is hidden
NO_DEVICE = "no_device"
QUEUED = "queued"
PUSH_OFF = "off"  # a deliver task reached a worker without APNs settings
CLAIM_SECONDS = 24 * 3600


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= QUOTE_LENGTH else text[:QUOTE_LENGTH - 1] + "…"


def alert_text(kind: str, actor: str, quote: str | None = None, in_comment: bool = True) -> str:
    """v1-era wording."""
    if kind == "like":
        return f"{actor} liked your photo."
    if kind == "comment":
        return f"{actor} commented: {_quote(quote)}"
    if kind == "mention":
        where = "a comment" if in_comment else "a photo"
        return f"{actor} mentioned you in {where}: {_quote(quote)}"
    if kind == "follow":
        return f"{actor} started following you."
    if kind == "follow_request":
        return f"{actor} requested to follow you."
    if kind == "follow_accepted":
        return f"{actor} accepted your follow request."
    raise ValueError(f"no push for {kind!r}")


def device_json(device: Device) -> dict:
    return {"token": device.token, "environment": device.environment, "topic": device.topic,
            "created_time": str(int(device.updated_at.timestamp()))}


class PushService:
    def __init__(self, db, redis, celery, provider: ApnsProvider | None, *, topic: str = "",
                 expiration_seconds: int = 86400, retry_backoff_seconds: float = 2.0,
                 retry_backoff_max_seconds: float = 300.0, max_retries: int = 8,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.redis = redis
        self.celery = celery
        self.provider = provider
        self.topic = topic
        self.expiration_seconds = expiration_seconds
        self.retry_backoff_seconds = retry_backoff_seconds
        self.retry_backoff_max_seconds = retry_backoff_max_seconds
        self.max_retries = max_retries
        self.clock = clock

    @property
    def enabled(self) -> bool:
        """False without APNs settings: nothing is published, nothing sent (/healthz: "push": "off")."""
        return self.provider is not None

    # -- devices ------------------------------------------------------------------
    def register_device(self, session: Session, user_id: int, token: str, environment: str = "production",
                        topic: str | None = None) -> Device:
        """Register (or re-register) a device token for the user; one registered by
        someone else moves to them. Commits."""
        token = token.lower()
        for _attempt in range(3):  # a concurrent first registration of the token wins the insert
            device = session.scalar(select(Device).where(Device.token == token).with_for_update())
            if device is None:
                device = Device(user_id=user_id, token=token, environment=environment, topic=topic)
                session.add(device)
            else:
                device.user_id, device.environment, device.topic = user_id, environment, topic
                device.updated_at, device.disabled_at = utcnow(), None
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            return device
        raise RuntimeError("device token registration kept conflicting")

    def devices_of(self, session: Session, user_id: int) -> list[Device]:
        return list(session.scalars(select(Device).where(Device.user_id == user_id).order_by(Device.id)))

    def remove_device(self, session: Session, user_id: int, token: str) -> None:
        """Unregister one of the user's own devices; 404 for any other token. Commits."""
        if not TOKEN.match(token):  # no query for what no device has (a NUL would fail on PostgreSQL)
            raise NotFound("no such device of yours")
        removed = session.execute(delete(Device).where(Device.user_id == user_id, Device.token == token.lower())
                                  .returning(Device.id)).first()
        if removed is None:
            raise NotFound("no such device of yours")
        session.commit()

    # -- preferences ----------------------------------------------------------------
    def preferences(self, session: Session, user_id: int) -> dict[str, bool]:
        muted = set(session.scalars(select(MutedNotification.kind).where(MutedNotification.user_id == user_id)))
        return {kind: kind not in muted for kind in KINDS}

    def set_preferences(self, session: Session, user_id: int, changes: dict[str, bool]) -> dict[str, bool]:
        """Switch kinds on (True) or off (False); the others stay. Commits."""
        off = [kind for kind, on in changes.items() if on is False]
        on = [kind for kind, on in changes.items() if on is True]
        if on:
            session.execute(delete(MutedNotification).where(MutedNotification.user_id == user_id,
                                                            MutedNotification.kind.in_(on)))
        if off:
            muted = set(session.scalars(select(MutedNotification.kind).where(
                MutedNotification.user_id == user_id, MutedNotification.kind.in_(off))))
            session.add_all(MutedNotification(user_id=user_id, kind=kind) for kind in off if kind not in muted)
        try:
            session.commit()
        except IntegrityError:  # a concurrent request muted the same kind: it is off either way
            session.rollback()
        return self.preferences(session, user_id)

    # -- notifying --------------------------------------------------------------------
    def notify(self, activity_ids: list[int], accepted: list) -> tuple[list[str], list[int]]:
        """Send deliveries for a transaction's activity and accepted requests. Returns each
        notification's result (queued, off_by_preference, no_device, gone) and the activity ids
        that are not ready yet (a caption mention of a processing photo), to notify again later."""
        results, later = [], []
        with self.db.session(read_only=True) as session:
            rows = {a.id: a for a in session.scalars(select(Activity).where(Activity.id.in_(activity_ids)))} \
                if activity_ids else {}
            for activity_id in activity_ids:
                row = rows.get(activity_id)
                outcome = self._activity_push(session, row) if row is not None else GONE
                if outcome == NOT_READY:
                    later.append(activity_id)
                    continue
                if isinstance(outcome, tuple):
                    outcome = self._claimed_send(session, activity_id, *outcome)
                results.append(outcome)
            for follower_id, followee_id in accepted:
                if blocked_either_way(session, follower_id, followee_id):
                    results.append(GONE)
                    continue
                actor = session.get(User, followee_id)
                if actor is None:  # the account was deleted meanwhile
                    results.append(GONE)
                    continue
                results.append(self._send(session, follower_id, "follow_accepted",
                                          alert_text("follow_accepted", actor.username), None,
                                          {"type": "follow_accepted", "user_id": str(followee_id)}))
        return results, later

    def _activity_push(self, session: Session, row: Activity):
        """(recipient, kind, text, collapse id, custom data) for an activity; or why there is none."""
        if blocked_either_way(session, row.user_id, row.actor_id):
            return GONE
        actor = session.get(User, row.actor_id)
        data = {"type": row.type, "activity_id": str(row.id), "user_id": str(row.actor_id)}
        if row.photo_id is None:
            return row.user_id, row.type, alert_text(row.type, actor.username), None, data
        if row.photo_id not in visible_photo_ids(session, row.user_id, [row.photo_id]):
            photo = session.get(Photo, row.photo_id)
            return NOT_READY if photo is not None and photo.status == "processing" else GONE
        data["media_id"] = str(row.photo_id)
        quote = None
        if row.comment_id is not None:
            comment = session.get(Comment, row.comment_id)
            if comment is None:
                return GONE
            quote = comment.text
        elif row.type == "mention":
            quote = session.get(Photo, row.photo_id).caption
        text = alert_text(row.type, actor.username, quote, in_comment=row.comment_id is not None)
        return row.user_id, row.type, text, f"photo-{row.photo_id}", data

    def _claimed_send(self, session: Session, activity_id: int, *push) -> str:
        if not self.redis.set(push_claimed_key(activity_id), 1, nx=True, ex=CLAIM_SECONDS):
            return GONE  # pushed already: this task ran before
        return self._send(session, *push)

    def _send(self, session: Session, user_id: int, kind: str, text: str, collapse_id: str | None,
              data: dict) -> str:
        if session.scalar(select(MutedNotification.kind).where(MutedNotification.user_id == user_id,
                                                               MutedNotification.kind == kind)):
            metrics.PUSH_NOTIFICATIONS.labels(OFF_BY_PREFERENCE).inc()
            return OFF_BY_PREFERENCE
        devices = self.devices_of(session, user_id)
        if not devices:
            return NO_DEVICE
        payload = {"aps": {"alert": text, "badge": activity.unseen_count(session, self.redis, user_id),
                           "sound": "default"}, "shutter": data}
        expiration = int(self.clock()) + self.expiration_seconds
        with self.celery.producer_or_acquire() as producer:
            for device in devices:
                notification = Notification(device.token, device.environment, device.topic or self.topic,
                                            payload, expiration, collapse_id)
                self.celery.send_task(DELIVER_TASK, kwargs={"notification": notification.as_dict(),
                                                            "queued_at": self.clock()}, producer=producer)
        return QUEUED

    # -- delivering ----------------------------------------------------------------------
    def deliver(self, notification: dict, queued_at: float | None = None) -> str:
        """Send one notification to one device; a device APNs refuses for good is removed
        (unless it was registered again after the notification was made). The result."""
        if self.provider is None:
            return PUSH_OFF
        n = Notification(**notification)
        answer = self.provider.send(n)
        metrics.PUSH_NOTIFICATIONS.labels(answer.result).inc()
        if answer.result in DEVICE_GONE:
            self._forget_device(n.device_token, answer.timestamp_ms, queued_at)
        elif answer.result in (REJECTED, EXPIRED_TOKEN):  # retrying cannot help: an operator can
            log.warning("push refused by APNs: %s %s (topic %s)", answer.status, answer.reason, n.topic)
        return answer.result

    def _forget_device(self, token: str, invalid_since_ms: int | None, queued_at: float | None) -> None:
        since = invalid_since_ms / 1000 if invalid_since_ms is not None else queued_at
        with self.db.session() as session:
            query = delete(Device).where(Device.token == token)
            if since is not None:
                query = query.where(Device.updated_at <= datetime.fromtimestamp(since, timezone.utc))
            session.execute(query)
            session.commit()

    def retry_delay(self, result: str, retries: int, expiration: int) -> float | None:
        """Seconds until a retry of a throttled or failed push (full jitter), or None: give up
        (not retryable, out of retries, or the retry would come after its apns-expiration)."""
        if result not in RETRYABLE or retries >= self.max_retries:
            return None
        delay = random.uniform(0, min(self.retry_backoff_max_seconds, self.retry_backoff_seconds * 2 ** retries))
        return delay if self.clock() + delay < expiration else None
