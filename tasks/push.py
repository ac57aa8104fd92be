"""The io queue's push notifications: thin wrappers over app.push.service.PushService.

notify turns a transaction's activity into one deliver message per device; deliver
POSTs one to APNs (over the process's one HTTP/2 connection) and retries a throttled
(429) or failed (5xx, no answer) push with exponential backoff and full jitter
(APNS_RETRY_BACKOFF_SECONDS, _MAX_SECONDS, APNS_MAX_RETRIES) until its apns-expiration.
Each returns its results (app.push.apns) for the metrics.
"""
from __future__ import annotations

from celery import shared_task

from app.services import services
# The io queue's policy for a database, Redis or broker hiccup (APNs' answers are deliver's to handle).
from tasks.realtime import RealtimeTask as PushTask

NOT_READY_RETRY_SECONDS = 20  # a caption mention waits for its photo to be ready
NOT_READY_RETRIES = 30


@shared_task(base=PushTask, bind=True, name="tasks.push.notify")
def notify(self, activity_ids: list[int], accepted: list) -> list[str]:
    """A transaction's new activity and accepted follow requests: one deliver per device."""
    results, later = services.push.notify(activity_ids, [tuple(pair) for pair in accepted])
    if later and self.request.retries < NOT_READY_RETRIES:
        raise self.retry(kwargs={"activity_ids": later, "accepted": []}, countdown=NOT_READY_RETRY_SECONDS,
                         max_retries=NOT_READY_RETRIES)
    return results


@shared_task(base=PushTask, bind=True, name="tasks.push.deliver", max_retries=None)
def deliver(self, notification: dict, queued_at: float | None = None) -> str:
    """One notification to one device."""
    result = services.push.deliver(notification, queued_at)
    delay = services.push.retry_delay(result, self.request.retries, notification["expiration"])
    if delay is not None:
        raise self.retry(countdown=delay)
    return result
