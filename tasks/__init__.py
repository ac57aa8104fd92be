"""The Celery app (`celery -A tasks worker`) and the services its tasks share.

Tasks stay thin: each calls one service function that tests can run without
a broker.
"""
from __future__ import annotations

from celery import Celery

from app.config import Settings
from app.logging import configure_logging
from app.services import Services

celery = Celery("shutter")
celery.config_from_object("celeryconfig")

_services: Services | None = None


def services() -> Services:
    """This worker process's services, made on first use (after the fork)."""
    global _services
    if _services is None:
        _services = Services(Settings.from_env())
    return _services


configure_logging()
