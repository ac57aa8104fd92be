"""The transactional outbox: work promised in the same commit as its data.

A row is added in the transaction that creates what the work is about (a
photo, a status change); after the commit it is published to the broker and
marked delivered. If the broker is down at that moment the row stays
undelivered, and the sweeper publishes it later. Consumers are idempotent,
so a row published twice does no harm.

A row keeps the request id it was promised under (app/platform/logging.py), and is
published with it whoever publishes it: the request itself, or the sweeper minutes
later, whose own context has no id (or its task's).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from celery import Celery, chain, group
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.platform.logging import bind_request_id, current_request_id, reset_request_id
from models import Outbox, utcnow

log = logging.getLogger(__name__)

# What each kind of row publishes, built from its payload. Two kinds are a
# photo's (the task names are the media and feed queues' contract); any other
# kind is a task name.
PROCESS_PHOTO = "process_photo"  # the media chain: derive + store, then publish
PUBLISH_PHOTO = "publish_photo"  # the downstream group of a photo that became ready (payload: tasks)
# The group of a publish_photo row that names no tasks: rows written before they did.
DEFAULT_DOWNSTREAM = ("tasks.feeds.fan_out",)
# Seconds to wait for RabbitMQ to confirm a message before the row is left for the sweeper.
CONFIRM_TIMEOUT = 2


def add(session: Session, kind: str, photo_id: int | None = None, **payload) -> Outbox:
    """A row for `session` to commit; add it after the rows it refers to."""
    return Outbox(kind=kind, photo_id=photo_id, payload=payload or None, request_id=current_request_id())


def task(name: str, **kwargs) -> Outbox:
    """A row that publishes the task `name` with these keyword arguments."""
    return Outbox(kind=name, payload=kwargs, request_id=current_request_id())


def promise(db, celery: Celery, name: str, **kwargs) -> None:
    """Task `name` promised in a transaction of its own, then published (a refused
    broker leaves it to the sweeper): for work that follows a commit already made."""
    with db.session() as session:
        row = task(name, **kwargs)
        session.add(row)
        session.commit()
        deliver(session, celery, [row])


def signature_for(celery: Celery, row: Outbox):
    if row.kind == PROCESS_PHOTO:
        return chain(
            celery.signature("tasks.media.process_photo", args=(row.photo_id,)),
            celery.signature("tasks.media.publish_photo", args=(row.photo_id,), immutable=True),
        )
    if row.kind == PUBLISH_PHOTO:
        names = (row.payload or {}).get("tasks") or DEFAULT_DOWNSTREAM
        return group(celery.signature(name, args=(row.photo_id,)) for name in names) if names else None
    # Any other kind is a plain task name with keyword arguments.
    return celery.signature(row.kind, kwargs=row.payload or {})


def deliver(session: Session, celery: Celery, rows: list[Outbox]) -> int:
    """Publish rows and mark them delivered; a broker failure leaves them for the sweeper."""
    delivered = 0
    for row in rows:
        try:
            signature = signature_for(celery, row)
            if signature is not None:
                _publish(signature, row.request_id)
        except Exception as error:  # the broker is unreachable: the sweeper will retry
            log.warning("outbox %s (%s) not published: %s", row.id, row.kind, type(error).__name__)
            session.execute(update(Outbox).where(Outbox.id == row.id).values(attempts=Outbox.attempts + 1))
            session.commit()
            # The broker is down: the rest would fail the same way, slowly.
            break
        mark_done(session, row)
        delivered += 1
    return delivered


def _publish(signature, request_id: str | None) -> None:
    # The row's request id is the current one while it is published: the publish signal
    # (logging.connect_celery_logging) puts it in the headers of every task sent.
    token = bind_request_id(request_id) if request_id else None
    try:
        # confirm_timeout: with publisher confirms (celeryconfig) a
        # hung broker fails the publish instead of holding the request.
        signature.apply_async(retry=True, retry_policy={"max_retries": 1, "interval_start": 0.2},
                              confirm_timeout=CONFIRM_TIMEOUT)
    finally:
        if token is not None:
            reset_request_id(token)


def mark_done(session: Session, row: Outbox) -> None:
    """The row's work is published (or was done at once): the sweeper leaves it alone."""
    session.execute(update(Outbox).where(Outbox.id == row.id).values(delivered_at=utcnow()))
    session.commit()


def deliver_pending(session: Session, celery: Celery, older_than: timedelta, limit: int = 500) -> int:
    """The sweeper's half: publish rows that should have been published by now."""
    rows = session.scalars(
        select(Outbox)
        .where(Outbox.delivered_at.is_(None), Outbox.created_at < utcnow() - older_than)
        .order_by(Outbox.id)
        .limit(limit)
    ).all()
    return deliver(session, celery, list(rows))


def pending(session: Session) -> tuple[int, datetime | None]:
    """Rows not yet published: how many, and when the oldest was written."""
    count, oldest = session.execute(
        select(func.count(Outbox.id), func.min(Outbox.created_at)).where(Outbox.delivered_at.is_(None))
    ).one()
    return count, oldest


def undelivered_age(session: Session) -> timedelta | None:
    """How long the oldest undelivered row has waited (None: nothing waits)."""
    _count, oldest = pending(session)
    if oldest is None:
        return None
    if oldest.tzinfo is None:  # SQLite gives naive datetimes back
        oldest = oldest.replace(tzinfo=timezone.utc)
    return utcnow() - oldest
