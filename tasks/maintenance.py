"""Periodic work on the default queue (celery beat)."""
from __future__ import annotations

from celery.utils.log import get_task_logger

from app import pipeline, popular, retention
from tasks import celery, services

log = get_task_logger(__name__)


@celery.task(name="tasks.maintenance.sweep")
def sweep() -> dict:
    with services().db.session() as session:
        result = pipeline.sweep(session, services().celery)
        purged = retention.purge(session, services().settings)
    if any(result.values()):
        log.info("sweep re-published %s", result)
    if any(purged.values()):
        log.info("sweep purged %s", purged)
    return {**result, **purged}


@celery.task(name="tasks.maintenance.compute_popular")
def compute_popular() -> int:
    """Re-rank /media/popular (every minute): readers only read the Redis set."""
    with services().db.read_session() as session:
        return popular.compute(session, services().redis)
