"""What the sweeper purges, so that no table grows without bound.

Delivered outbox rows and spent (used or expired) authorization codes have
done their work; they are kept a while for inspection (OUTBOX_RETENTION_HOURS,
AUTH_CODE_RETENTION_HOURS), then deleted in bounded batches: each batch is a
short transaction, and a sweep stops after MAX_BATCHES (the next one, a
minute later, goes on), so a backlog never holds locks for long.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from models import AuthorizationCode, Outbox, utcnow

BATCH = 1000
MAX_BATCHES = 20


def _delete_in_batches(session: Session, model, condition, batch: int, max_batches: int) -> int:
    deleted = 0
    for _ in range(max_batches):
        ids = select(model.id).where(condition).limit(batch).scalar_subquery()
        count = session.execute(delete(model).where(model.id.in_(ids))).rowcount
        session.commit()
        deleted += count
        if count < batch:
            break
    return deleted


def purge_delivered_outbox(session: Session, older_than: timedelta,
                           batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Outbox rows delivered more than `older_than` ago (undelivered ones stay for the sweeper)."""
    return _delete_in_batches(session, Outbox, Outbox.delivered_at < utcnow() - older_than, batch, max_batches)


def purge_spent_codes(session: Session, older_than: timedelta,
                      batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Authorization codes used, or expired, more than `older_than` ago."""
    cutoff = utcnow() - older_than
    spent = or_(AuthorizationCode.used_at < cutoff, AuthorizationCode.expires_at < cutoff)
    return _delete_in_batches(session, AuthorizationCode, spent, batch, max_batches)


def purge(session: Session, settings) -> dict:
    """The sweeper's purge, with the settings' retention periods."""
    return {
        "outbox_purged": purge_delivered_outbox(session, timedelta(hours=settings.outbox_retention_hours)),
        "codes_purged": purge_spent_codes(session, timedelta(hours=settings.auth_code_retention_hours)),
    }
