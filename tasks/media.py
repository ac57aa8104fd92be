"""The media queue: derivatives, then publication. Thin wrappers over app.pipeline."""
from __future__ import annotations

from celery.utils.log import get_task_logger
from sqlalchemy.exc import OperationalError

from app import pipeline
from app.imaging import ImageRejected
from app.storage import StorageError
from tasks import celery, services

log = get_task_logger(__name__)

# Storage and database hiccups are retried with exponential backoff and jitter;
# a file that turns out not to be an image fails at once.
RETRYABLE = (StorageError, OperationalError, ConnectionError, TimeoutError)


class PhotoTask(celery.Task):
    abstract = True
    autoretry_for = RETRYABLE
    max_retries = 8
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        photo_id = args[0] if args else kwargs.get("photo_id")
        log.error("photo %s failed in %s: %s", photo_id, self.name, type(exc).__name__)
        with services().db.session() as session:
            pipeline.mark_failed(session, photo_id, f"{self.name}: {type(exc).__name__}: {exc}"[:500])


@celery.task(base=PhotoTask, name="tasks.media.process_photo")
def process_photo(photo_id: int) -> None:
    try:
        with services().db.session() as session:
            pipeline.process_photo(session, services().storage, photo_id)
    except ImageRejected as error:  # not retryable: the same bytes fail the same way
        log.warning("photo %s rejected: %s", photo_id, error.message)
        with services().db.session() as session:
            pipeline.mark_failed(session, photo_id, error.message)


@celery.task(base=PhotoTask, name="tasks.media.publish_photo")
def publish_photo(photo_id: int) -> None:
    with services().db.session() as session:
        pipeline.publish_photo(session, services().celery, photo_id)
