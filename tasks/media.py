"""The media queue: derivatives, then publication. Thin wrappers over app.media.pipeline."""
from __future__ import annotations

import os

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy.exc import OperationalError

from app.media import pipeline
from app.media.imaging import ImageRejected
from app.media.storage import StorageError, StorageNotFound
from app.platform import metrics
from app.services import services
from app.worker import ContextTask

log = get_task_logger(__name__)

# Storage and database hiccups are retried with exponential backoff and jitter,
# and so is a run past its soft time limit (a slow but reachable S3); a file
# that turns out not to be an image fails at once.
RETRYABLE = (StorageError, OperationalError, ConnectionError, TimeoutError, SoftTimeLimitExceeded)
# The first retry waits up to PHOTO_RETRY_BACKOFF_SECONDS (whole seconds, at
# least 1), each next one up to twice as long, never more than
# PHOTO_RETRY_BACKOFF_MAX_SECONDS. Tests shorten them to see a storage outage
# end within seconds; production keeps the defaults.
RETRY_BACKOFF = int(os.environ.get("PHOTO_RETRY_BACKOFF_SECONDS") or 2)
RETRY_BACKOFF_MAX = int(os.environ.get("PHOTO_RETRY_BACKOFF_MAX_SECONDS") or 300)


class PhotoTask(ContextTask):
    abstract = True
    autoretry_for = RETRYABLE
    max_retries = 8
    retry_backoff = RETRY_BACKOFF
    retry_backoff_max = RETRY_BACKOFF_MAX
    retry_jitter = True
    # Time limits: app.worker.make_celery. Past the soft one the run raises
    # SoftTimeLimitExceeded (retried); past the hard one its worker child is
    # killed (the run counts as an attempt).

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        photo_id = args[0] if args else kwargs.get("photo_id")
        if isinstance(exc, RETRYABLE) and not isinstance(exc, StorageNotFound):
            # Retries ran out during an outage (S3, the database): the photo is
            # fine, so it stays `processing` and the sweeper starts it again
            # later. Failing it would lose the upload for good.
            log.error("photo %s: %s still failing after %d retries (%s); left to the sweeper",
                      photo_id, self.name, self.request.retries, type(exc).__name__)
            return
        log.error("photo %s failed in %s: %s", photo_id, self.name, type(exc).__name__)
        with services.db.session() as session:
            pipeline.mark_failed(session, photo_id, f"{self.name}: {type(exc).__name__}: {exc}"[:500])


@shared_task(base=PhotoTask, name="tasks.media.process_photo")
def process_photo(photo_id: int) -> None:
    try:
        with services.db.session() as session:
            pipeline.process_photo(session, services.storage, photo_id)
    except ImageRejected as error:  # not retryable: the same bytes fail the same way
        log.warning("photo %s rejected: %s", photo_id, error.message)
        with services.db.session() as session:
            pipeline.mark_failed(session, photo_id, error.message, metrics.FAILED_INVALID_IMAGE)


@shared_task(name="tasks.media.delete_files", autoretry_for=RETRYABLE, max_retries=None,
             retry_backoff=RETRY_BACKOFF, retry_backoff_max=RETRY_BACKOFF_MAX, retry_jitter=True)
def delete_files(keys: list[str]) -> None:
    """A deleted photo's files, when the storage failed at the time (retried until it answers)."""
    services.storage.delete(keys)


@shared_task(base=PhotoTask, name="tasks.media.publish_photo")
def publish_photo(photo_id: int) -> None:
    with services.db.session() as session:
        pipeline.publish_photo(session, services.celery, photo_id, feeds=services.feeds,
                               share_networks=services.sharing.enabled_networks())
