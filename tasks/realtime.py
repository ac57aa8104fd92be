"""The io queue's real-time subscriptions: which callbacks a ready photo concerns, then one
signed POST per callback. Thin wrappers over app.realtime.subscriptions.SubscriptionService.

A failed POST is retried with exponential backoff and full jitter
(SUBSCRIPTION_RETRY_BACKOFF_SECONDS, _MAX_SECONDS) until it is delivered or every
subscription in its batch has been disabled (SUBSCRIPTION_MAX_FAILURES failures in a
row): each failure counts toward that, so the retries end by themselves.
"""
from __future__ import annotations

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError

from app.services import services
from app.worker import ContextTask


class RealtimeTask(ContextTask):
    abstract = True
    # The database or the broker hiccuped (not the callback: deliver counts those itself).
    autoretry_for = (OperationalError, BrokerError, ConnectionError, TimeoutError)
    max_retries = 10
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True


@shared_task(base=RealtimeTask, name="tasks.realtime.notify_subscribers")
def notify_subscribers(photo_id: int) -> int:
    """A photo became ready (the downstream group): promise its updates, batched per callback."""
    return services.subscriptions.notify(photo_id)


@shared_task(base=RealtimeTask, bind=True, name="tasks.realtime.deliver", max_retries=None)
def deliver(self, client_pk: int, callback_url: str, updates: list[dict]) -> None:
    """POST one batch of updates to a callback, signed with the client's secret."""
    if not services.subscriptions.deliver(client_pk, callback_url, updates):
        raise self.retry(countdown=services.subscriptions.retry_delay(self.request.retries))
