"""The Celery app (`celery -A tasks worker`) and the services its tasks share.

Tasks stay thin: each calls one service function that tests can run without
a broker.
"""
from __future__ import annotations

from celery import Celery

from app.config import Settings
from app.logging import configure_logging
from app.services import Services


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' broker: the workers', or an API process's publisher."""
    app = Celery("shutter", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = settings.broker_url
    return app


_settings = Settings.from_env()
settings = _settings  # this process's settings, read once at import (the tasks' limits)
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
    import sentry_sdk

    from app.logging import scrub_sentry_event

    sentry_sdk.init(dsn=_settings.sentry_dsn, send_default_pii=False, before_send=scrub_sentry_event)

from tasks import feeds, maintenance, media  # noqa: E402,F401  (register the tasks)
