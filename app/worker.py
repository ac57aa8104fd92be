"""The Celery app: one per services container, the API's to publish and the
workers' to consume (`celery -A worker:celery worker`, see worker.py).

Its tasks (tasks/, registered with `shared_task`) run inside the Flask app's
context, so they reach the services exactly as routes do: `app.services.services`.
"""
from __future__ import annotations

from celery import Celery, Task

from app.config import Settings

TASK_MODULES = ("tasks.media", "tasks.feeds", "tasks.maintenance", "tasks.search", "tasks.realtime",
                "tasks.sharing", "tasks.push")
MEDIA_TASKS = ("tasks.media.process_photo", "tasks.media.publish_photo", "tasks.media.delete_files")


class ContextTask(Task):
    """Runs in the app context of the Flask app its Celery app was made for."""

    abstract = True

    def __call__(self, *args, **kwargs):
        flask_app = getattr(self.app, "flask_app", None)
        if flask_app is None:  # a publisher's app (no Flask app behind it): run as is
            return super().__call__(*args, **kwargs)
        with flask_app.app_context():
            return super().__call__(*args, **kwargs)


def make_celery(settings: Settings, flask_app=None) -> Celery:
    """A Celery app on the settings' broker; `flask_app`: whose context its tasks run in."""
    app = Celery("shutter", set_as_current=False, task_cls=ContextTask, include=TASK_MODULES)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = settings.broker_url
    # The media tasks' time limits (PHOTO_SOFT_TIME_LIMIT_SECONDS, ...). A
    # message carries its publisher's limits, and a worker obeys those: the
    # API and the workers must run with the same settings.
    limits = {"soft_time_limit": settings.photo_soft_time_limit_seconds,
              "time_limit": settings.photo_time_limit_seconds}
    app.conf.task_annotations = {name: limits for name in MEDIA_TASKS}
    app.flask_app = flask_app
    return app
