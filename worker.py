"""The Celery workers' entry point: `celery -A worker:celery worker` (and beat, flower).

One Flask app built from the environment, as wsgi.py builds the API's; its
services container makes the Celery app, and its tasks run in its context.
Task metrics come from Celery's signals; with WORKER_METRICS_PORT a worker
serves them itself (README, "Metrics").
"""
from app import create_app
from app.platform.metrics import watch_tasks

flask_app = create_app()
celery = flask_app.extensions["shutter"].celery
_settings = flask_app.extensions["shutter"].settings
watch_tasks(_settings.worker_metrics_port, _settings.worker_metrics_host)
