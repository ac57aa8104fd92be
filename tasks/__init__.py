"""Celery task modules, a few lines each that call one service.

The Celery app is app/worker.py's (`celery -A worker:celery worker`); tasks
register with `shared_task` and run in the Flask app's context, so they reach
the services as routes do (`app.services.services`). Importing these modules
has no side effects beyond defining the tasks.
"""
