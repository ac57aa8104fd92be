"""Periodic work on the default queue (celery beat)."""
from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from celery.utils.log import get_task_logger

from app.engagement import popular
from app.media import pipeline, rekey
from app.platform import retention
from app.services import services

log = get_task_logger(__name__)


@shared_task(name="tasks.maintenance.sweep")
def sweep() -> dict:
    with services.db.session() as session:
        result = pipeline.sweep(session, services.celery)
        purged = retention.purge(session, services.settings)
        # Photos processed before derivative tokens: a batch a minute moves under one.
        rekeyed = rekey.rekey_batch(session, services.storage, celery=services.celery)
    # Photos announced to subscriptions: the claims that kept a notification from running twice.
    purged["claims_purged"] = services.subscriptions.purge_claims(
        timedelta(hours=services.settings.outbox_retention_hours))
    if any(result.values()):
        log.info("sweep re-published %s", result)
    if any(purged.values()):
        log.info("sweep purged %s", purged)
    if rekeyed:
        log.info("sweep moved %d photos under a derivative token", rekeyed)
    return {**result, **purged, "rekeyed": rekeyed}


@shared_task(name="tasks.maintenance.compute_popular")
def compute_popular() -> int:
    """Re-rank /media/popular (every minute): readers only read the Redis set."""
    with services.db.read_session() as session:
        return popular.compute(session, services.redis)
