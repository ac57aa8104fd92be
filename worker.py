"""The Celery workers' entry point: `celery -A worker:celery worker` (and beat, flower).

One Flask app built from the environment, as wsgi.py builds the API's; its
services container makes the Celery app, and its tasks run in its context.
"""
from app import create_app

flask_app = create_app()
celery = flask_app.extensions["shutter"].celery
