"""The Celery app (`celery -A tasks worker`) and the services its tasks share.

Tasks stay thin: each calls one service function that tests can run without
a broker.
"""
from __future__ import annotations

from celery import Celery

from app.config import Settings
from app.logging import configure_logging
from app.services import Services


MEDIA_TASKS = ("tasks.media.process_photo", "tasks.media.publish_photo", "tasks.media.delete_files")


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' broker: the workers', or an API process's publisher."""
    app = Celery("shutter", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = settings.broker_url
    # The media tasks' time limits (PHOTO_SOFT_TIME_LIMIT_SECONDS, ...). A
    # message carries its publisher's limits, and a worker obeys those: the
    # API and the workers must run with the same settings.
    limits = {"soft_time_limit": settings.photo_soft_time_limit_seconds,
              "time_limit": settings.photo_time_limit_seconds}
    app.conf.task_annotations = {name: limits for name in MEDIA_TASKS}
    return app


_settings = Settings.from_env()
celery = make_celery(_settings)
celery.set_current()

_services: Services | None = None


def services() -> Services:
    """This worker process's services, made on first use (after the fork)."""
    global _services
    if _services is None:
        _services = Services(_settings)
    return _services


configure_logging()
if _settings.sentry_dsn:
    from app.logging import init_sentry

    init_sentry(_settings.sentry_dsn)

from tasks import feeds, maintenance, media  # noqa: E402,F401  (register the tasks)
