"""Shutter: create_app() makes the Flask app (app/factory.py builds it).

Importing `app`, or any module under it, imports nothing else: a worker's
pool child or a benchmark that needs only the imaging pays only for that.
"""
from __future__ import annotations


def create_app(settings=None):
    """The Flask app for `settings` (default: Settings.from_env())."""
    from app.factory import create_app as build  # the whole app, once an app is wanted

    return build(settings)
