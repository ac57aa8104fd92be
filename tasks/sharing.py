"""The io queue's shares: a ready photo posted to the uploader's linked Twitter or Facebook
account. Thin wrappers over app.sharing.service.Sharing, which posts at most once per photo
and network however often a task runs, and says when to try again (a 429's reset time, a
5xx's backoff with jitter): those retries do not end in an error; MAX_SHARE_RETRIES bounds them.
"""
from __future__ import annotations

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError

from app.services import services
from app.worker import ContextTask

MAX_SHARE_RETRIES = 12


class ShareTask(ContextTask):
    abstract = True
    # The database or the broker hiccuped (the networks' failures are the service's to handle).
    autoretry_for = (OperationalError, BrokerError)
    max_retries = MAX_SHARE_RETRIES
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True


def _share(task, photo_id: int, network: str) -> str:
    outcome = services.sharing.share(photo_id, network, retries=task.request.retries)
    if outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in)
    return outcome.result


@shared_task(base=ShareTask, bind=True, name="tasks.sharing.share_twitter")
def share_twitter(self, photo_id: int) -> str:
    """A ready photo whose upload said share_to=twitter (the downstream group)."""
    return _share(self, photo_id, "twitter")


@shared_task(base=ShareTask, bind=True, name="tasks.sharing.share_facebook")
def share_facebook(self, photo_id: int) -> str:
    """A ready photo whose upload said share_to=facebook (the downstream group)."""
    return _share(self, photo_id, "facebook")
